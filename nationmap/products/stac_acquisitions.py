"""The month's acquisitions in STAC: the ``nationmap-acquisitions`` collection, one item each.

An item per row of the month's acquisition table (:mod:`nationmap.products.acquisitions`), with
its footprint as geometry, its acquisition time as datetime and the input file as its asset (href
as catalogued, role data, ``file:checksum``/``file:size`` from the catalog). Product items link to
the acquisitions their cell used (``derived_from``, :func:`link_sources`). Extensions:

- ``sar``: frequency band L and PALSAR-2's centre frequency (1.2575 GHz), the file's polarisation,
  the PALSAR-2 observation mode as instrument mode (``UBS``, ``FBD``, ``WBD``...; ``unknown``
  where the catalog has none), product type ``L<level>`` for a scene (``L2.1``) and ``gamma0
  mosaic`` for a CARD4L NRB mosaic tile, observation direction from the look side.
- ``sat``: orbit state from the pass direction, absolute orbit = the total orbit number in the
  scene's name (mosaic tiles have none), ALOS-2's international designator 2014-029A.
  ``sat:relative_orbit`` is left out: ALOS-2 repeats its ground track every 207 revolutions (14
  days), so two scenes whose orbit numbers differ by a multiple of 207 share a path, but JAXA's
  path numbers (001-207) are not ``orbit mod 207``: the offset between the two numberings is in
  neither the file name, the summary nor the catalog, and a number that is not JAXA's path would
  mislead anyone matching paths.
- ``view`` only where an incidence angle is known: a mosaic tile whose XML gives the near- and
  far-range incidence of its one source acquisition, no more than :data:`MAX_SWATH_DEG` apart;
  ``view:incidence_angle`` is their midpoint, which differs from the incidence at the swath's
  centre (in ground or slant range) by at most 0.31 degree for such swaths (spherical Earth of
  6371 km, ALOS-2 at 628 km, near-range incidence 8-55 degrees). The near and far angles are in
  the item as ``nationmap:incidence_near_deg`` / ``_far_deg``. L2.1 scenes carry no incidence:
  no ``view``.
"""

from __future__ import annotations

import pystac
from pystac.extensions.file import FileExtension
from pystac.extensions.sar import FrequencyBand, ObservationDirection, Polarization, SarExtension
from pystac.extensions.sat import OrbitState, SatExtension
from pystac.extensions.view import ViewExtension
from shapely.geometry import mapping

from nationmap.data.months import Month
from nationmap.errors import InputError
from nationmap.products.acquisitions import Acquisition

ACQUISITIONS_COLLECTION = "nationmap-acquisitions"
CENTER_FREQUENCY_GHZ = 1.2575  # PALSAR-2's L-band centre frequency
PLATFORM, INSTRUMENT, COSPAR_ID = "alos-2", "palsar-2", "2014-029A"
MAX_SWATH_DEG = 5.0  # widest near-to-far incidence span given a view:incidence_angle
MOSAIC_PRODUCT_TYPE = "gamma0 mosaic"
LICENSE = "proprietary"  # JAXA's data


def product_type(a: Acquisition) -> str:
    """``sar:product_type``: ``L<level>`` of a scene, ``gamma0 mosaic`` of a mosaic tile."""
    if a.kind == "mosaic":
        return MOSAIC_PRODUCT_TYPE
    return f"L{a.level}" if a.level else "unknown"


def incidence_angle(a: Acquisition) -> float | None:
    """``view:incidence_angle`` in degrees (module docstring), or None where none is known."""
    near, far = a.incidence_near_deg, a.incidence_far_deg
    if near is None or far is None or far - near > MAX_SWATH_DEG:
        return None
    return round((near + far) / 2, 3)


def _asset(a: Acquisition) -> pystac.Asset:
    asset = pystac.Asset(href=a.path, media_type=pystac.MediaType.GEOTIFF, roles=["data"],
                         title=f"{a.polarisation} backscatter, {a.kind} {a.id} (input, as catalogued)")
    f = FileExtension.ext(asset, add_if_missing=False)
    if a.sha256 and len(a.sha256) == 64:  # a file that could not be read again has no checksum
        f.checksum = "1220" + a.sha256
    if a.size_bytes is not None:
        f.size = a.size_bytes
    return asset


def acquisition_item(a: Acquisition) -> pystac.Item:
    """The STAC item of one acquisition (module docstring); InputError for a polarisation that
    is none of HH, HV, VH, VV."""
    props = {"platform": PLATFORM, "instruments": [INSTRUMENT], "nationmap:index": a.index,
             "nationmap:day": a.day, "nationmap:kind": a.kind}
    props |= {"nationmap:frame": a.frame} if a.frame is not None else {}
    item = pystac.Item(id=a.id, geometry=mapping(a.footprint), bbox=list(a.footprint.bounds),
                       datetime=a.datetime, properties=props)
    try:
        polarisation = Polarization(a.polarisation)
    except ValueError:
        raise InputError(f"acquisition {a.id}: polarisation {a.polarisation!r} is none of HH, HV, VH, VV") from None
    SarExtension.ext(item, add_if_missing=True).apply(
        instrument_mode=a.mode or "unknown", frequency_band=FrequencyBand.L, polarizations=[polarisation],
        product_type=product_type(a), center_frequency=CENTER_FREQUENCY_GHZ,
        observation_direction=ObservationDirection(a.look_side) if a.look_side in ("left", "right") else None)
    SatExtension.ext(item, add_if_missing=True).apply(
        orbit_state=OrbitState(a.pass_direction) if a.pass_direction in ("ascending", "descending") else None,
        absolute_orbit=a.orbit if a.orbit is not None and a.orbit >= 1 else None,
        platform_international_designator=COSPAR_ID)
    angle = incidence_angle(a)
    if angle is not None:
        ViewExtension.ext(item, add_if_missing=True).apply(incidence_angle=angle)
        item.properties |= {"nationmap:incidence_near_deg": a.incidence_near_deg,
                            "nationmap:incidence_far_deg": a.incidence_far_deg}
    FileExtension.add_to(item)
    item.add_asset(a.polarisation.lower(), _asset(a))
    return item


def acquisition_collection(acquisitions: list[Acquisition], region: str,
                           month: Month) -> tuple[pystac.Collection, dict[str, pystac.Item]]:
    """The ``nationmap-acquisitions`` collection of ``region`` and ``month`` with an item per
    acquisition; returns it and its items by acquisition id."""
    items = {a.id: acquisition_item(a) for a in acquisitions}
    boxes = [a.footprint.bounds for a in acquisitions]
    bbox = [min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)]
    times = [a.datetime for a in acquisitions]
    collection = pystac.Collection(
        id=ACQUISITIONS_COLLECTION, title=f"ALOS-2 PALSAR-2 acquisitions, {region} {month}",
        description=(f"The acquisitions the {region} {month} products were made from, one item each; "
                     "nationmap:index is the acquisition's row in the month's acquisition table and its value "
                     "in the source layer"),
        extent=pystac.Extent(pystac.SpatialExtent([[float(v) for v in bbox]]),
                             pystac.TemporalExtent([[min(times), max(times)]])),
        license=LICENSE)
    for item in items.values():
        collection.add_item(item)
    return collection, items


def link_sources(item: pystac.Item, acquisitions: dict[str, pystac.Item], ids) -> None:
    """Link a product ``item`` to the acquisition items of ``ids`` (``derived_from``); InputError
    naming an id that has no acquisition item."""
    for sid in ids:
        if sid not in acquisitions:
            raise InputError(f"{item.id}: acquisition {sid} is not in the month's acquisition table")
        item.add_link(pystac.Link(pystac.RelType.DERIVED_FROM, acquisitions[sid], media_type=pystac.MediaType.JSON))
