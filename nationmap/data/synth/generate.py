"""``nationmap data synth``: write a synthetic ALOS-2 world in the real formats.

Output layout::

    OUT/lulc/LC_N35E137.tif                       JAXA-like LULC tiles (uint8, EPSG:4326, 0 = no data)
    OUT/alos2/2022-09/<scene id>/IMG-HH-...tif    ALOS-2-like L2.1 HH scenes (uint16 DN, UTM)
    OUT/alos2/2022-09/<scene id>/summary.txt      scene centre time and product fields
    OUT/alos2/2022-09/<scene id>/MSK-<id>.tif     the scene's truth mask (JAXA codes: 0 no data, 50 sea,
                                                  100 layover, 150 shadow, 255 land; uint8)
    OUT/alos2/2022-09/<scene id>/LINCI-<id>.tif   its local incidence angle (uint8 degrees, 0 = no data)
    OUT/truth/2022-10/LC_N35E137.tif              the truth of a later month where change events
                                                  made it differ from lulc/ (the first month's)
    OUT/changes.parquet                           the change events (``--change-rate``; one row each,
                                                  see :mod:`nationmap.data.synth.changes`)
    OUT/synth.json                                config, scene list and measured statistics
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import ColorInterp

from nationmap.data.calibration import dn_to_db
from nationmap.data.grid import Cell, parse_cell
from nationmap.data.lulc import class_histogram, load_class_table, lulc_tile_name
from nationmap.data.masks import MASK_LAYOVER, MASK_SHADOW
from nationmap.data.months import Month, parse_month
from nationmap.data.regions import Region
from nationmap.data.synth.changes import KINDS, ChangeEvent, apply_changes, plan_changes
from nationmap.data.synth.noise import lonlat_to_km
from nationmap.data.synth.scenes import (ALOS2_LAUNCH, ScenePlan, plan_scenes, plan_to_dict, render_scene,
                                         synth_months, touches_cells, write_scene)
from nationmap.data.synth.world import WorldConfig, landscape
from nationmap.errors import InputError
from nationmap.files import atomic_file, atomic_path
from nationmap.parallel import run_tasks


@dataclass(frozen=True)
class SynthConfig:
    """What to synthesise.

    Attributes:
        cells: national-grid cell names of the LULC tiles (the region).
        months: ``YYYY-MM`` months with acquisitions.
        seed: world and acquisition seed (equal seeds give identical files).
        lulc_pixels_per_degree: LULC tile resolution (JAXA: 12000; demo: 1200).
        scene_pixel_m: scene pixel spacing in metres (also the world's nominal resolution).
        scene_length_km / scene_width_km: along-track length and swath width of a scene.
        missing_fraction: share of frames not acquired in a given month.
        looks: equivalent number of looks of the speckle.
        relief_m: height (m) of the world's hills, ridges and valleys (``WorldConfig.relief_m``):
            the default 500 has no layover or shadow; ``STEEP_RELIEF_M`` (2500) makes the
            mountains a steep range with layover and shadow in the scenes' masks. LULC tiles are
            the same for every value.
        change_rate: change events (clearings, construction, solar farms, floods) per 1,000 km^2
            of the cells and month after the first (:mod:`nationmap.data.synth.changes`). 0 (the
            default): the land is the same every month, as in worlds written before events
            existed; :data:`REALISTIC_CHANGE_RATE` is of the order of Japan's land change.
        quiet_share: probability that a month after the first has no event at all.
    """

    cells: tuple[str, ...]
    months: tuple[str, ...]
    seed: int = 0
    lulc_pixels_per_degree: int = 1200
    scene_pixel_m: float = 75.0
    scene_length_km: float = 60.0
    scene_width_km: float = 50.0
    missing_fraction: float = 0.15
    looks: float = 4.0
    relief_m: float = 500.0
    change_rate: float = 0.0
    quiet_share: float = 0.25
    world: WorldConfig = field(default=None)  # derived from seed, scene_pixel_m and relief_m

    def __post_init__(self):
        if not self.cells:
            raise InputError("synth needs at least one cell")
        for c in self.cells:
            parse_cell(c)
        if not self.months:
            raise InputError("synth needs at least one month")
        first, last = synth_months()
        for m in self.months:
            if not first <= parse_month(m) <= last:
                raise InputError(f"month {m}: the synthetic ALOS-2 (launched {ALOS2_LAUNCH:%Y-%m-%d}) flies "
                                 f"{first}..{last}, the months its orbit numbers fit the product names")
        if not 12 <= self.lulc_pixels_per_degree <= 12000:
            raise InputError("lulc_pixels_per_degree must be 12..12000")
        if not 3.0 <= self.scene_pixel_m <= 1000.0:
            raise InputError("scene_pixel_m must be 3..1000 m")
        if not (1.0 <= self.scene_length_km <= 400 and 1.0 <= self.scene_width_km <= 400):
            raise InputError("scene length and width must be 1..400 km")
        if not 0.0 <= self.missing_fraction < 1.0:
            raise InputError("missing_fraction must be in [0, 1)")
        if self.looks < 1:
            raise InputError("looks must be >= 1")
        if not 0.0 <= self.change_rate <= 100.0:
            raise InputError(f"change rate must be 0..100 events per 1,000 km2 and month, not {self.change_rate}")
        if not 0.0 <= self.quiet_share <= 1.0:
            raise InputError(f"quiet share must be in [0, 1], not {self.quiet_share}")
        if self.world is None:
            object.__setattr__(self, "world", WorldConfig(seed=self.seed, pixel_m=self.scene_pixel_m,
                                                          relief_m=self.relief_m))

    @classmethod
    def for_region(cls, region: Region, months: list[Month], **kwargs) -> "SynthConfig":
        return cls(cells=tuple(region.cell_names), months=tuple(str(m) for m in months), **kwargs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cells"] = list(self.cells)
        d["months"] = list(self.months)
        return d


REALISTIC_CHANGE_RATE = 0.3
"""Change events per 1,000 km^2 and month of the order of Japan's land change (about 0.05 % of the
land a year cleared, built on, covered with panels or flooded: 3.6 events a year per 1,000 km^2
of about 0.1 km^2 each)."""


@functools.lru_cache(maxsize=8)
def change_events(cfg: SynthConfig) -> tuple[ChangeEvent, ...]:
    """The change events of ``cfg``'s world (none when ``cfg.change_rate`` is 0)."""
    cells = tuple((c.lon, c.lat) for c in map(parse_cell, cfg.cells))
    return plan_changes(cells, cfg.months, cfg.world, cfg.change_rate, cfg.quiet_share)


def _tile_points(cell: Cell, n: int) -> tuple[np.ndarray, np.ndarray]:
    """World km (x, y), each (n, n), of the pixel centres of ``cell`` at ``n`` px per degree."""
    step = 1.0 / n
    lon = cell.lon + (np.arange(n) + 0.5) * step
    lat = cell.lat + 1 - (np.arange(n) + 0.5) * step
    return lonlat_to_km(*np.meshgrid(lon, lat))


def lulc_tile(cell: Cell, cfg: SynthConfig, month: str | None = None) -> np.ndarray:
    """(N, N) uint8 JAXA codes of ``cell`` at ``cfg.lulc_pixels_per_degree`` (pixel centres), in
    ``month`` (default: the first month, the epoch of the ``lulc/`` tiles)."""
    x, y = _tile_points(cell, cfg.lulc_pixels_per_degree)
    codes = landscape(x, y, cfg.world).codes
    return apply_changes(codes, x, y, month, change_events(cfg)) if month else codes


def _tile_task(args) -> dict:
    cell_name, cfg, out_dir = args
    cell = parse_cell(cell_name)
    x, y = _tile_points(cell, cfg.lulc_pixels_per_degree)
    codes = landscape(x, y, cfg.world).codes
    _write_tile(Path(out_dir) / "lulc" / lulc_tile_name(cell_name), codes, cell, cfg)
    changed, events = {}, change_events(cfg)
    for month in sorted(cfg.months)[1:] if events else ():  # a world without events: no month differs
        truth = apply_changes(codes, x, y, month, events)
        changed[month] = int((truth != codes).sum())
        if changed[month]:
            _write_tile(Path(out_dir) / "truth" / month / lulc_tile_name(cell_name), truth, cell, cfg)
    return {"cell": cell_name, "path": str(Path(out_dir) / "lulc" / lulc_tile_name(cell_name)),
            "counts": class_histogram(codes).tolist(), "changed": changed}


def _write_tile(path: Path, codes: np.ndarray, cell: Cell, cfg: SynthConfig) -> None:
    """A JAXA-like LULC tile (uint8, EPSG:4326, colour table and class names, 0 = no data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    table = load_class_table()
    profile = dict(driver="GTiff", dtype="uint8", count=1, width=codes.shape[1], height=codes.shape[0],
                   crs="EPSG:4326", transform=cell.transform(cfg.lulc_pixels_per_degree), nodata=0,
                   compress="deflate", tiled=True, blockxsize=256, blockysize=256)
    with atomic_path(path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.write_colormap(1, {c.code: c.rgb + (255,) for c in table.classes} | {0: (0, 0, 0, 0)})
        dst.colorinterp = [ColorInterp.palette]
        dst.update_tags(1, **{f"CLASS_{c.code}": c.name for c in table.classes})


def _scene_task(args) -> dict:
    plan, cfg, out_dir = args
    scene = render_scene(plan, cfg.world, cfg.looks, cfg.seed, change_events(cfg))
    directory = Path(out_dir) / plan.month / plan.scene_id
    path = write_scene(plan, scene, directory)
    valid = scene.dn > 0
    db = dn_to_db(scene.dn[valid]).astype(np.float64)
    cls = scene.codes[valid]
    n = np.bincount(cls, minlength=15)[:15]
    s1 = np.bincount(cls, weights=db, minlength=15)[:15]
    s2 = np.bincount(cls, weights=db * db, minlength=15)[:15]
    return {"plan": plan_to_dict(plan), "path": str(path), "n": n.tolist(), "sum": s1.tolist(), "sumsq": s2.tolist(),
            "width": scene.grid.width, "height": scene.grid.height,
            "layover_px": int((scene.mask == MASK_LAYOVER).sum()), "shadow_px": int((scene.mask == MASK_SHADOW).sum())}


def synthesize(out: Path, cfg: SynthConfig, executor: str = "ray") -> dict:
    """Write tiles, scenes and ``synth.json`` under ``out``; returns the summary dict."""
    out = Path(out)
    lulc_dir, scene_dir = out / "lulc", out / "alos2"
    lulc_dir.mkdir(parents=True, exist_ok=True)
    scene_dir.mkdir(parents=True, exist_ok=True)
    cells = [parse_cell(c) for c in cfg.cells]
    bounds = (min(c.lon for c in cells), min(c.lat for c in cells), max(c.lon for c in cells) + 1, max(c.lat for c in cells) + 1)
    plans: list[ScenePlan] = touches_cells(plan_scenes(
        bounds, [parse_month(m) for m in cfg.months], cfg.seed, length_km=cfg.scene_length_km,
        width_km=cfg.scene_width_km, pixel_m=cfg.scene_pixel_m, missing_fraction=cfg.missing_fraction,
    ), [c.polygon for c in cells])
    tiles = run_tasks(_tile_task, [(c, cfg, str(out)) for c in cfg.cells], desc="LULC tiles", executor=executor)
    scenes = run_tasks(_scene_task, [(p, cfg, str(scene_dir)) for p in plans], desc="ALOS-2 scenes", executor=executor)
    summary = {"config": cfg.to_dict(), "statistics": _statistics(tiles, scenes),
               "changes": _write_changes(out, cfg, tiles),
               "tiles": [{"cell": t["cell"], "path": str(Path(t["path"]).relative_to(out))} for t in tiles],
               "scenes": [{**s["plan"], "path": str(Path(s["path"]).relative_to(out)), "width": s["width"],
                           "height": s["height"], "layover_px": s["layover_px"], "shadow_px": s["shadow_px"]}
                          for s in scenes]}
    with atomic_file(out / "synth.json") as f:
        f.write(json.dumps(summary, indent=2))
    return summary


def _write_changes(out: Path, cfg: SynthConfig, tiles: list[dict]) -> dict:
    """``changes.parquet`` (one row per event; written when the config has a change rate) and the
    summary of the change: events per kind, changed pixels of the LULC tiles per month."""
    import pandas as pd

    events = change_events(cfg)
    if cfg.change_rate > 0:
        columns = ["event", "kind", "month", "until", "lon", "lat", "length_m", "width_m", "angle_deg",
                   "from_codes", "to_code", "area_km2"]
        with atomic_path(out / "changes.parquet") as tmp:
            pd.DataFrame([e.to_dict() for e in events], columns=columns).to_parquet(tmp, index=False)
    months = sorted(cfg.months)[1:]
    return {"events": len(events), "by_kind": {k: sum(e.kind == k for e in events) for k in KINDS},
            "events_by_month": {m: sum(e.month == m for e in events) for m in months},
            "changed_pixels_by_month": {m: sum(t["changed"].get(m, 0) for t in tiles) for m in months},
            "truth": "truth/<YYYY-MM>/ holds a later month's tile where it differs from lulc/"}


def _statistics(tiles: list[dict], scenes: list[dict]) -> dict:
    table = load_class_table()
    counts = np.sum([t["counts"] for t in tiles], axis=0)
    mapped = counts[1:].sum()
    n = np.sum([s["n"] for s in scenes], axis=0)
    s1 = np.sum([s["sum"] for s in scenes], axis=0)
    s2 = np.sum([s["sumsq"] for s in scenes], axis=0)
    per_class = {}
    for c in table.classes:
        if n[c.code]:
            mean = s1[c.code] / n[c.code]
            per_class[c.name] = {"mean_db": round(float(mean), 2),
                                 "std_db": round(float(np.sqrt(max(s2[c.code] / n[c.code] - mean**2, 0))), 2),
                                 "pixels": int(n[c.code])}
    total_n = n.sum()
    mean = s1.sum() / max(total_n, 1)
    lulc9 = table.scheme("lulc9")
    f9 = lulc9.remap_counts(counts)
    return {
        "lulc_class_fraction": {c.name: round(float(counts[c.code] / max(mapped, 1)), 5) for c in table.classes},
        "lulc9_class_fraction": {name: round(float(v / max(f9.sum(), 1)), 5) for name, v in zip(lulc9.names, f9)},
        "lulc_nodata_fraction": round(float(counts[0] / max(counts.sum(), 1)), 5),
        "hh_db_by_class": per_class,
        "hh_db_mean": round(float(mean), 3),
        "hh_db_std": round(float(np.sqrt(max(s2.sum() / max(total_n, 1) - mean**2, 0))), 3),
        "scenes": len(scenes),
        "scene_valid_pixels": int(total_n),
        "scene_layover_pixels": int(sum(s["layover_px"] for s in scenes)),
        "scene_shadow_pixels": int(sum(s["shadow_px"] for s in scenes)),
    }
