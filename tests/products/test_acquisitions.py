"""The month's acquisition table: built from catalog rows in the run's order, written as CSV and
Parquet, read back for a ``source`` index; the CARD4L incidence angles of the real mosaic tile."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import shapely
from shapely.geometry import box

from nationmap.data.catalog import SCHEMA, index_file, write_catalog
from nationmap.data.months import parse_month
from nationmap.data.regions import resolve_region
from nationmap.errors import InputError
from nationmap.infer.config import InferConfig
from nationmap.infer.pipeline import select_scenes
from nationmap.products.acquisitions import (NO_SOURCE, acquisition_rows, card4l_incidence, read_acquisition_table,
                                             write_acquisition_table)

MONTH = parse_month("2022-09")
UTC = dt.timezone.utc


def catalog_row(scene_id: str, when: str, orbit: int | None = 44123, pol: str = "HH", **kw) -> dict:
    """A catalog row (nationmap.data.catalog.SCHEMA) with the fields the table reads."""
    row = {name: None for name in SCHEMA.names}
    row.update(id=scene_id, kind="scene", polarisation=pol, datetime=pd.Timestamp(when), month=when[:7], mode="UBS",
               level="2.1", look_side="right", pass_direction="descending", orbit=orbit, frame=2900, units="dn",
               crs="EPSG:32654", width=10, height=10, pixel_size=10.0, lon_min=137.1, lat_min=35.2, lon_max=137.6,
               lat_max=35.8, geometry=shapely.to_wkb(box(137.1, 35.2, 137.6, 35.812345678)),
               path=f"/raw/IMG-{pol}-{scene_id}.tif", size_bytes=1234, mtime_ns=0, sha256="ab" * 32)
    row.update(kw)
    return row


@pytest.fixture()
def rows():
    frame = pd.DataFrame([
        catalog_row("ALOS2441232900-220903-UBSR2.1GUD", "2022-09-03T01:02:03.456789Z"),
        catalog_row("ALOS2441242910-220930-FBDR2.1GUA", "2022-09-30T23:59:59Z", mode="FBD", pass_direction="ascending"),
        catalog_row("ALOS2441252920-220901-WBDL2.1GUD", "2022-09-01T00:00:00Z", orbit=None, mode=None, look_side="left"),
    ])
    return acquisition_rows(frame.itertuples(), MONTH)


def test_rows_carry_the_catalog_fields_and_the_day_of_the_month(rows):
    assert [a.index for a in rows] == [0, 1, 2]
    assert [a.day for a in rows] == [2, 29, 0]  # 3rd, 30th and 1st of September (UTC)
    first = rows[0]
    assert first.datetime == dt.datetime(2022, 9, 3, 1, 2, 3, 456789, tzinfo=UTC)
    assert (first.mode, first.level, first.look_side, first.pass_direction) == ("UBS", "2.1", "right", "descending")
    assert first.orbit == 44123 and first.frame == 2900 and first.sha256 == "ab" * 32 and first.size_bytes == 1234
    assert first.footprint.bounds == (137.1, 35.2, 137.6, 35.812345678)
    assert rows[2].orbit is None and rows[2].mode is None
    assert first.incidence_near_deg is None  # a scene's name and catalog row give none


def test_an_acquisition_of_another_month_in_utc_is_refused():
    late = pd.DataFrame([catalog_row("ALOS2441232900-221001-UBSR2.1GUD", "2022-10-01T08:00:00+09:00")])
    # 2022-10-01 08:00 in Japan is 2022-09-30 23:00 UTC: of September
    assert acquisition_rows(late.itertuples(), MONTH)[0].day == 29
    early = pd.DataFrame([catalog_row("ALOS2441232900-220901-UBSR2.1GUD", "2022-09-01T08:00:00+09:00")])
    with pytest.raises(InputError, match="not of the month 2022-09"):
        acquisition_rows(early.itertuples(), MONTH)


def test_the_table_round_trips_through_csv_and_parquet(rows, tmp_path):
    csv, parquet = write_acquisition_table(rows, tmp_path / "tables" / "demo_2022-09_acquisitions")
    assert (csv.name, parquet.name) == ("demo_2022-09_acquisitions.csv", "demo_2022-09_acquisitions.parquet")
    table = read_acquisition_table(csv)
    assert table.rows == tuple(rows)  # every field, the footprint to full precision, the time to the microsecond
    assert "2022-09-03T01:02:03.456789Z" in csv.read_text()
    frame = pd.read_parquet(parquet)
    assert frame["id"].tolist() == [a.id for a in rows]
    assert frame["datetime"].tolist()[0] == pd.Timestamp("2022-09-03T01:02:03.456789Z")
    assert frame["orbit"].tolist()[:2] == [44123, 44123] and pd.isna(frame["orbit"].iloc[2])
    assert str(frame["orbit"].dtype) == "Int64" and str(frame["index"].dtype) == "int32"
    assert not list(csv.parent.glob(".*"))  # no temporary left behind


def test_a_source_index_looks_up_its_row(rows, tmp_path):
    table = read_acquisition_table(write_acquisition_table(rows, tmp_path / "t")[0])
    assert table.get(1).id == "ALOS2441242910-220930-FBDR2.1GUA" and table.get(1).day == 29
    assert table.get(NO_SOURCE) is None and table.get(3) is None and table.get(-1) is None
    assert table.ids() == [a.id for a in rows]


@pytest.mark.parametrize("damage, reason", [
    (lambda text: text.replace(",footprint,", ",shape,"), "missing column"),
    (lambda text: text.replace("\n1,", "\n7,", 1), "indexes are not 0..2"),
    (lambda text: text.replace("2022-09-03T01:02:03.456789Z", "yesterday"), "not a readable acquisition table"),
    (lambda text: text.replace("POLYGON ((137.6", "POLYGON ((east"), "not a readable acquisition table"),
])
def test_a_damaged_table_is_one_input_error(rows, tmp_path, damage, reason):
    csv, _ = write_acquisition_table(rows, tmp_path / "t")
    csv.write_text(damage(csv.read_text()))
    with pytest.raises(InputError, match=reason) as info:
        read_acquisition_table(csv)
    assert str(csv) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(InputError, match="not a readable acquisition table"):
        read_acquisition_table(tmp_path / "absent.csv")


def test_the_table_order_is_the_runs_acquisition_order(tmp_path):
    """select_scenes (the run's acquisitions, whose order is the manifest's inputs and the scene
    stage's index) sorted by id: the table indexes them in that order, the other month, the HV
    file and the scene outside the region left out."""
    # id order (by orbit) is not time order, nor the order given
    ids = ["ALOS2441202900-220915-UBSR2.1GUD", "ALOS2441302900-220905-UBSR2.1GUD", "ALOS2441102900-220925-UBSR2.1GUD"]
    frame = pd.DataFrame([catalog_row(i, f"2022-09-{i[19:21]}T01:00:00Z") for i in ids] + [
        catalog_row("ALOS2451102900-221005-UBSR2.1GUD", "2022-10-05T01:00:00Z"),
        catalog_row("ALOS2441102900-220905-UBSR2.1GUD", "2022-09-05T01:00:00Z", pol="HV"),
        catalog_row("ALOS2441402900-220926-UBSR2.1GUD", "2022-09-26T01:00:00Z", lon_min=140.1, lon_max=140.6,
                    geometry=shapely.to_wkb(box(140.1, 35.2, 140.6, 35.8)))])
    catalog = tmp_path / "catalog.parquet"
    write_catalog(frame, catalog)
    cfg = InferConfig(region="N35E137", month="2022-09", catalog=str(catalog), out=str(tmp_path / "out"),
                      lulc_model=str(tmp_path / "bundle"))  # not read by select_scenes
    selected = select_scenes(cfg, resolve_region("N35E137"))
    table = acquisition_rows(selected.itertuples(), MONTH)
    assert [a.id for a in table] == sorted(ids)
    assert [a.index for a in table] == [0, 1, 2] and [a.day for a in table] == [24, 14, 4]


def test_the_real_mosaic_tiles_incidence_angles(real_dir):
    tile = real_dir / "palsar2-mosaic-N23W161-2020"
    assert card4l_incidence(tile / "N23W161_20_F02DAR.xml") == (33.687, 38.623)  # the XML's near and far range
    row = index_file(tile / "N23W161_20_sl_HH_F02DAR.tif")
    [a] = acquisition_rows(pd.DataFrame([row]).itertuples(), parse_month("2020-09"))
    assert (a.kind, a.mode, a.pass_direction, a.look_side) == ("mosaic", "FBD", "ascending", "right")
    assert (a.incidence_near_deg, a.incidence_far_deg) == (33.687, 38.623)
    assert a.datetime == dt.datetime(2020, 9, 9, 10, 44, 12, 406000, tzinfo=UTC) and a.day == 8
