"""``nationmap infer`` end to end on the tiny world: products, manifest, reruns, failures."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from PIL import Image

from nationmap.data.catalog import build_catalog
from nationmap.data.lulc import find_lulc_tiles
from nationmap.infer.config import InferConfig
from nationmap.infer.pipeline import run_inference
from nationmap.records import RunManifest
from nationmap.products.cog import is_valid_cog
from nationmap.products.stac_validate import validate_catalog
from tests.conftest import TINY_CELLS

REGION = ",".join(TINY_CELLS)
PPD = 600  # the tiny world's LULC grid
PRODUCTS = ("lulc", "water", "confidence", "reason", "source", "date", "count")  # the declared, without --probabilities
DRAWN = tuple(p for p in PRODUCTS if p != "source")  # declared style "none": no quicklook


def config(tiny_catalog, tiny_world, bundles, out, **kw) -> InferConfig:
    args = dict(region=REGION, month="2022-09", catalog=str(tiny_catalog), lulc_model=str(bundles["lulc"]),
                water_model=str(bundles["water"]), out=str(out), lulc_dir=str(tiny_world / "lulc"),
                pixels_per_degree=PPD, overlap=16, batch_size=8, executor="serial", cell_block=512)
    args.update(kw)
    return InferConfig(**args)


def product_bytes(run_dir: Path) -> dict[str, bytes]:
    files = sorted(run_dir.glob("cells/*/*.tif")) + sorted(run_dir.glob("mosaic/*")) + sorted(run_dir.glob("quicklooks/*.png"))
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def first_run(tiny_catalog, tiny_world, tiny_bundles, tmp_path_factory):
    out = tmp_path_factory.mktemp("products")
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out))
    return Path(manifest.run_dir), manifest


def test_products_are_valid_cogs_on_the_label_grid(first_run, tiny_world):
    run_dir, manifest = first_run
    assert manifest.status == "ok" and manifest.failures == []
    assert run_dir.name == "2022-09" and run_dir.parent.name == "N35E137_N35E138"
    tiles = find_lulc_tiles(tiny_world / "lulc")
    for cell in TINY_CELLS:
        for product in PRODUCTS:
            path = run_dir / "cells" / cell / f"{cell}_2022-09_{product}.tif"
            assert is_valid_cog(path), path
            with rasterio.open(path) as ds, rasterio.open(tiles[cell]) as ref:
                # pixel for pixel on the reference label grid of the cell
                assert ds.transform == ref.transform and ds.shape == ref.shape and ds.crs == ref.crs
                assert ds.block_shapes == [(512, 512)] and ds.compression.name == "deflate"
                assert ds.overviews(1) == [2]
                assert ds.descriptions[0] == product
                data = ds.read(1)
                if product == "lulc":
                    assert ds.nodata == 0 and ds.colormap(1)[1][:3] == (0x1F, 0x4F, 0xD6)
                    assert ds.tags(1)["CLASS_1"] == "Water" and ds.tags(1)["CLASS_9"] == "Greenhouse"
                    assert set(np.unique(data)) <= set(range(10))
                if product == "water":
                    assert ds.nodata == 255 and set(np.unique(data)) <= {0, 1, 255}
                if product == "confidence":
                    assert ds.nodata == 255 and data[data != 255].max() <= 100
                if product == "count":
                    assert ds.nodata is None
        count = rasterio.open(run_dir / "cells" / cell / f"{cell}_2022-09_count.tif").read(1)
        lulc = rasterio.open(run_dir / "cells" / cell / f"{cell}_2022-09_lulc.tif").read(1)
        assert ((count == 0) == (lulc == 0)).all()  # no data exactly where no acquisition counted
        assert count.max() >= 2  # overlapping acquisitions are combined
    # the scene-grid intermediates are gone after a complete run
    assert not list((run_dir / ".work").glob("scenes/*.tif"))


def test_mosaic_quicklooks_stac_and_manifest(first_run, tiny_catalog):
    run_dir, manifest = first_run
    for product in PRODUCTS:
        mosaic = run_dir / "mosaic" / f"N35E137_N35E138_2022-09_{product}.tif"
        assert is_valid_cog(mosaic)
        with rasterio.open(mosaic) as ds:
            assert ds.shape == (PPD, 2 * PPD) and ds.transform.c == 137.0 and ds.transform.f == 36.0
            west = ds.read(1, window=((0, PPD), (0, PPD)))
        cell = rasterio.open(run_dir / "cells" / "N35E137" / f"N35E137_2022-09_{product}.tif").read(1)
        assert (west == cell).all()
        with rasterio.open(mosaic.with_suffix(".vrt")) as vrt, rasterio.open(mosaic) as ds:
            assert vrt.shape == ds.shape and vrt.transform == ds.transform and (vrt.read(1) == ds.read(1)).all()
            assert vrt.overviews(1) == ds.overviews(1) == [2, 4]  # 1200 -> 600 -> 300 px
        assert manifest.products.vrt[product].path == f"mosaic/N35E137_N35E138_2022-09_{product}.vrt"
        png = run_dir / "quicklooks" / f"N35E137_N35E138_2022-09_{product}.png"
        assert png.exists() == (product in DRAWN)
        if png.exists():
            assert Image.open(png).mode == "RGBA" and Image.open(png).size == (1200, 900)  # 10 x 7.5 in at 120 dpi
    catalog = pystac.Catalog.from_file(str(run_dir / "stac" / "catalog.json"))
    n = len(PRODUCTS)
    acquisitions = 1 + len(manifest.inputs)  # the acquisitions collection and an item per acquisition
    assert validate_catalog(run_dir / "stac" / "catalog.json") == 1 + n + n * 2 + acquisitions  # offline, every object
    collections = {c.id: c for c in catalog.get_children()}
    assert set(collections) == {f"nationmap-{p}" for p in PRODUCTS} | {"nationmap-acquisitions"}
    lulc = collections["nationmap-lulc"]
    items = list(lulc.get_items())
    assert sorted(i.id for i in items) == ["N35E137_2022-09_lulc", "N35E138_2022-09_lulc"]
    asset = items[0].assets["lulc"]
    assert Path(asset.get_absolute_href()).exists()
    assert asset.extra_fields["proj:shape"] == [PPD, PPD] and asset.extra_fields["proj:code"] == "EPSG:4326"
    assert [c["name"] for c in asset.extra_fields["classification:classes"]][:2] == ["water", "built-up"]
    assert asset.extra_fields["raster:bands"][0]["nodata"] == 0
    assert Path(lulc.assets["mosaic"].get_absolute_href()).exists()
    assert lulc.assets["mosaic"].extra_fields["proj:shape"] == [PPD, 2 * PPD]
    assert Path(lulc.assets["vrt"].get_absolute_href()) == run_dir / "mosaic" / "N35E137_N35E138_2022-09_lulc.vrt"
    # manifest: inputs with checksums, model hashes, code version, config, timings, per-unit status
    assert {"inputs", "models", "code", "config", "timings", "scenes", "cell_results"} <= set(manifest.to_json())
    assert all(len(i.sha256) == 64 for i in manifest.inputs)
    assert len(manifest.models["lulc"].sha256["model.safetensors"]) == 64
    assert all(s.status == "ok" and not s.skipped for s in manifest.scenes)
    assert json.loads((run_dir / "manifest.json").read_text())["run_id"] == manifest.run_id


def test_rerun_skips_verified_work_and_force_redoes_it_identically(first_run, tiny_catalog, tiny_world, tiny_bundles):
    run_dir, _ = first_run
    before = product_bytes(run_dir)
    mtimes = {p: (run_dir / p).stat().st_mtime_ns for p in before}
    out = run_dir.parents[1]
    again = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out))
    assert all(s.skipped for s in again.scenes) and all(c.skipped for c in again.cell_results)
    assert {p: (run_dir / p).stat().st_mtime_ns for p in before} == mtimes  # nothing rewritten
    forced = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out), force=True)
    assert not any(s.skipped for s in forced.scenes) and not any(c.skipped for c in forced.cell_results)
    assert product_bytes(run_dir) == before  # byte-identical products
    # a damaged product is detected by its checksum and rebuilt
    victim = run_dir / "cells" / "N35E138" / "N35E138_2022-09_water.tif"
    victim.write_bytes(b"damaged")
    repaired = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, out))
    assert [c.cell for c in repaired.cell_results if not c.skipped] == ["N35E138"]
    assert product_bytes(run_dir) == before


def test_unreadable_scene_is_reported_and_count_shows_the_gap(first_run, world_copy, tiny_bundles, tmp_path):
    catalog = tmp_path / "catalog.parquet"
    build_catalog(world_copy, catalog, executor="serial")
    from nationmap.data.catalog import read_catalog

    df = read_catalog(catalog)
    sep = df[(df.month == "2022-09") & (df.kind == "scene")].sort_values("id")
    victim = Path(sep.path.iloc[0])
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 3])  # truncated after cataloguing
    manifest = run_inference(config(catalog, world_copy, tiny_bundles, tmp_path / "out"))
    assert manifest.status == "partial"
    failed = [f for f in manifest.failures if f.what == "scene"]
    assert [f.id for f in failed] == [sep.id.iloc[0]] and failed[0].reason
    run_dir = Path(manifest.run_dir)
    healthy_dir, _ = first_run
    total = healthy = 0
    for cell in TINY_CELLS:
        total += rasterio.open(run_dir / "cells" / cell / f"{cell}_2022-09_count.tif").read(1).astype(int).sum()
        healthy += rasterio.open(healthy_dir / "cells" / cell / f"{cell}_2022-09_count.tif").read(1).astype(int).sum()
    assert total < healthy


def test_cell_without_data_is_reported_not_written(tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, region="N33E138,N35E138"))
    assert manifest.status == "ok" and manifest.empty_cells == ["N33E138"]
    run_dir = Path(manifest.run_dir)
    assert not (run_dir / "cells" / "N33E138").exists()
    with rasterio.open(run_dir / "mosaic" / "N33E138_N35E138_2022-09_lulc.tif") as ds:
        assert ds.shape == (3 * PPD, PPD)
        assert (ds.read(1, window=((2 * PPD, 3 * PPD), (0, PPD))) == 0).all()


def _cli(config_file: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nationmap.cli.main", "infer", "--region", REGION, "--date", "2022-09",
            "--config", str(config_file), *extra]


def test_killed_run_resumes_and_matches_an_uninterrupted_run(tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    spec = tmp_path / "infer.toml"
    spec.write_text("[infer]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in {
        "catalog": str(tiny_catalog), "lulc_model": str(tiny_bundles["lulc"]), "water_model": str(tiny_bundles["water"]),
        "lulc_dir": str(tiny_world / "lulc"), "pixels_per_degree": PPD, "overlap": 16, "batch_size": 8,
        "executor": "serial", "cell_block": 512}.items()) + "\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    clean = subprocess.run(_cli(spec, "--out", str(tmp_path / "clean")), capture_output=True, text=True, env=env)
    assert clean.returncode == 0, clean.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(_cli(spec, "--out", str(out)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    cells_state = out / "N35E137_N35E138" / "2022-09" / ".work" / "state" / "cells"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(cells_state.glob("*.json")):
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    run_dir = out / "N35E137_N35E138" / "2022-09"
    assert not (run_dir / "manifest.json").exists()
    resumed = subprocess.run(_cli(spec, "--out", str(out)), capture_output=True, text=True, env=env)
    assert resumed.returncode == 0, resumed.stderr
    manifest = RunManifest.read(run_dir / "manifest.json")
    assert all(s.skipped for s in manifest.scenes)  # every scene was done before the kill
    redone = [c.cell for c in manifest.cell_results if not c.skipped]
    assert redone == ["N35E138"]  # only the missing cell
    assert product_bytes(run_dir) == product_bytes(tmp_path / "clean" / "N35E137_N35E138" / "2022-09")


@pytest.mark.ray
def test_ray_data_pipeline(ray_local, tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, executor="ray", concurrency=2))
    assert manifest.status == "ok" and len(manifest.scenes) >= 3
    run_dir = Path(manifest.run_dir)
    for cell in TINY_CELLS:
        assert is_valid_cog(run_dir / "cells" / cell / f"{cell}_2022-09_lulc.tif")


def test_unusable_settings_are_one_line_errors(tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    from nationmap.errors import InputError

    with pytest.raises(InputError, match="overlap must be 0..32"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, overlap=64))
    with pytest.raises(InputError, match="is a water model, not lulc"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, lulc_model=str(tiny_bundles["water"])))
    with pytest.raises(InputError, match="no HH acquisitions"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, month="2021-01"))
    assert not list(tmp_path.iterdir())  # nothing written


def test_the_driver_never_imports_torch():
    """The driver of a Ray run holds no model: importing torch would cost it about 600 MiB."""
    code = ("import sys; import nationmap.cli.main, nationmap.cli.infer, nationmap.infer.pipeline, "
            "nationmap.infer.ray_data, nationmap.ops.refresh; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_area_tables_add_up_and_match_an_independent_computation(first_run):
    import pandas as pd

    from tests.products.test_areas import band_area_km2

    run_dir, manifest = first_run
    csv = run_dir / manifest.products.tables["areas_csv"].path
    table = pd.read_csv(csv)
    parquet = pd.read_parquet(run_dir / manifest.products.tables["areas_parquet"].path)
    pd.testing.assert_frame_equal(table, parquet, check_exact=False, rtol=1e-6, atol=1e-6)  # CSV: 6 decimals
    assert list(table.columns) == ["region", "month", "scope", "cell", "layer", "code", "class", "area_km2", "share"]
    for scope_cell, rows in table.groupby(["scope", "cell"]):
        mapped = rows.query("layer == 'mapped' and code == 1").area_km2.item()
        whole = rows.query("layer == 'mapped'").area_km2.sum()
        assert mapped > 0 and whole == pytest.approx(sum(band_area_km2(35, 36, 1) for _ in range(
            1 if scope_cell[0] == "cell" else 2)), rel=1e-6)
        for layer in ("lulc", "water"):  # the classes add up to the mapped area
            assert rows[rows.layer == layer].area_km2.sum() == pytest.approx(mapped, rel=1e-3), (scope_cell, layer)
            assert rows[rows.layer == layer].share.sum() == pytest.approx(1.0, rel=1e-3)
    cells = table[table.scope == "cell"].groupby(["layer", "code"]).area_km2.sum()
    region = table[table.scope == "region"].set_index(["layer", "code"]).area_km2
    assert np.allclose(region.sort_index(), cells.sort_index(), rtol=1e-9)
    # one cell's class areas from its COG, row by row with the closed-form band area (no pyproj)
    with rasterio.open(run_dir / "cells" / "N35E137" / "N35E137_2022-09_lulc.tif") as ds:
        codes = ds.read(1)
    expected = {}
    for i, row in enumerate(codes):
        area = band_area_km2(36 - (i + 1) / PPD, 36 - i / PPD, 1 / PPD)
        for code, n in zip(*np.unique(row, return_counts=True)):
            expected[int(code)] = expected.get(int(code), 0.0) + n * area
    got = table.query("scope == 'cell' and cell == 'N35E137' and layer == 'lulc'").set_index("code").area_km2
    for code, km2 in got.items():
        assert km2 == pytest.approx(expected.get(code, 0.0), rel=1e-6, abs=1e-9), code


def test_the_acquisition_table_explains_source_date_and_stac_provenance(first_run):
    """Row i of the published acquisition table is the manifest's input i; every source index of a
    cell names an acquisition the cell used, whose day is the date layer's value there; the
    product items are derived_from exactly the acquisitions the cell used."""
    from nationmap.products.acquisitions import NO_SOURCE, read_acquisition_table

    run_dir, manifest = first_run
    table = read_acquisition_table(run_dir / manifest.products.tables["acquisitions_csv"].path)
    assert table.ids() == [i.id for i in manifest.inputs]
    assert [a.datetime for a in table.rows] == [dt.datetime.fromisoformat(i.datetime) for i in manifest.inputs]
    for cell in manifest.ok_cells():
        with rasterio.open(run_dir / "cells" / cell.cell / f"{cell.cell}_2022-09_source.tif") as ds:
            source = ds.read(1)
        with rasterio.open(run_dir / "cells" / cell.cell / f"{cell.cell}_2022-09_date.tif") as ds:
            date = ds.read(1)
        used = sorted({int(v) for v in np.unique(source)} - {NO_SOURCE})
        assert used and {table.get(i).id for i in used} <= set(cell.scenes_used)
        for i in used:
            assert (date[source == i] == table.get(i).day).all()
        item = run_dir / "stac" / "nationmap-lulc" / f"{cell.cell}_2022-09_lulc" / f"{cell.cell}_2022-09_lulc.json"
        links = [link["href"] for link in json.loads(item.read_text())["links"] if link["rel"] == "derived_from"]
        assert [json.loads((item.parent / href).read_text())["id"] for href in links] == cell.scenes_used
    collection = pystac.Collection.from_file(str(run_dir / "stac" / "nationmap-acquisitions" / "collection.json"))
    assert {"acquisitions-csv", "acquisitions-parquet"} == set(collection.assets)
    first = next(collection.get_items())
    assert first.properties["sar:frequency_band"] == "L" and first.properties["sar:polarizations"] == ["HH"]


def test_change_tables_against_the_previous_month(first_run, tiny_catalog, tiny_world, tiny_bundles, tmp_path):
    import pandas as pd

    previous_dir, _ = first_run
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, month="2022-10",
                                    previous=str(previous_dir)))
    run_dir = Path(manifest.run_dir)
    change = pd.read_csv(run_dir / manifest.products.tables["change_csv"].path)
    assert set(change.previous_month) == {"2022-09"} and set(change.month) == {"2022-10"}
    areas = pd.read_csv(run_dir / manifest.products.tables["areas_csv"].path)
    for layer in ("lulc", "water"):
        rows = change.query(f"scope == 'region' and layer == '{layer}'")
        # every pixel mapped in both months moved from one class to one class: at most the mapped area
        mapped = areas.query("scope == 'region' and layer == 'mapped' and code == 1").area_km2.item()
        assert 0 < rows.area_km2.sum() <= mapped * (1 + 1e-9)
        now = areas.query(f"scope == 'region' and layer == '{layer}'").set_index("code").area_km2
        assert (rows.groupby("to_code").area_km2.sum() <= now.reindex(rows.to_code.unique()) * (1 + 1e-9)).all()
    collection = pystac.Collection.from_file(str(run_dir / "stac" / "nationmap-lulc" / "collection.json"))
    assert {"areas-csv", "areas-parquet", "change-csv", "change-parquet"} <= set(collection.assets)
    assert validate_catalog(run_dir / "stac" / "catalog.json") > 1
    with pytest.raises(Exception, match="not a month before"):
        run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path / "again", previous=str(run_dir)))


def test_runs_show_lists_the_area_tables_and_the_regions_areas(first_run):
    import pandas as pd

    from nationmap.ops.history import find_run, format_run

    run_dir, _ = first_run
    manifest = RunManifest.read(run_dir / "manifest.json")  # the last rerun's (earlier tests reran into it)
    run = find_run([run_dir.parent.parent], manifest.run_id)
    table = pd.read_csv(run_dir / manifest.products.tables["areas_csv"].path)
    water = table.query("scope == 'region' and layer == 'lulc' and `class` == 'Water'").area_km2.item()
    assert run.details["areas_km2"]["lulc"]["Water"] == pytest.approx(water, abs=0.05)
    assert str(run_dir / manifest.products.tables["change_csv"].path if "change_csv" in manifest.products.tables
               else run_dir / manifest.products.tables["areas_parquet"].path) in run.reports
    assert f"  lulc: Water {water:,.1f}" in format_run(run)


def test_the_scene_bar_counts_scenes_and_the_windows_predicted(tiny_catalog, tiny_world, tiny_bundles, tmp_path,
                                                                capsys):
    manifest = run_inference(config(tiny_catalog, tiny_world, tiny_bundles, tmp_path, region=TINY_CELLS[0]),
                             log=lambda line: None)
    scenes = [s for s in manifest.scenes if s.status == "ok"]
    windows = sum(s.windows for s in scenes)
    assert windows > len(scenes) > 0
    err = capsys.readouterr().err
    assert f"scenes ({windows:,} windows predicted)" in err and f"{len(scenes)}/{len(scenes)}" in err
