"""The no-data reason layer end to end on a world with a steep mountain range: the synthetic
world's own layover/shadow masks (its truth, per acquisition) against what the published
``reason`` layer says, and the area table's reasons against the cell's area."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import reproject

from nationmap.data.grid import parse_cell
from nationmap.data.masks import MASK_LAND, MASK_LAYOVER, MASK_SHADOW, MASK_WATER, mask_path
from nationmap.data.synth.world import STEEP_RELIEF_M
from nationmap.infer.config import InferConfig
from nationmap.infer.pipeline import run_inference
from nationmap.products import pixels
from nationmap.products.areas import geometry_km2

CELL, MONTH, PPD = "N34E138", "2022-09", 600


@pytest.fixture(scope="module")
def steep(tmp_path_factory, tiny_bundles):
    from nationmap.data.catalog import build_catalog
    from nationmap.data.synth.generate import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("steep")
    cfg = SynthConfig(cells=(CELL,), months=(MONTH,), seed=5, lulc_pixels_per_degree=PPD, scene_pixel_m=100.0,
                      scene_length_km=50.0, scene_width_km=45.0, missing_fraction=0.0, relief_m=STEEP_RELIEF_M)
    synthesize(root / "raw", cfg, executor="serial")
    build_catalog(root / "raw", root / "catalog.parquet", executor="serial")
    _one_path(root / "catalog.parquet")
    manifest = run_inference(InferConfig(
        region=CELL, month=MONTH, catalog=str(root / "catalog.parquet"), lulc_model=str(tiny_bundles["lulc"]),
        water_model=str(tiny_bundles["water"]), out=str(root / "products"), pixels_per_degree=PPD, overlap=16,
        batch_size=8, executor="serial", cell_block=512))
    assert manifest.status == "ok", manifest.failures
    return root, manifest


def _one_path(catalog: Path) -> None:
    """Keep the acquisitions of the one path (orbit) whose scenes hold the most layover and
    shadow: seen from one geometry, what it cannot see no other acquisition fills in."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(catalog)
    masked: dict[int, int] = {}
    for orbit, path in zip(table["orbit"].to_pylist(), table["path"].to_pylist()):
        with rasterio.open(mask_path(path)) as ds:
            masked[orbit] = masked.get(orbit, 0) + int(np.isin(ds.read(1), (MASK_LAYOVER, MASK_SHADOW)).sum())
    pq.write_table(table.filter(pc.equal(table["orbit"], max(masked, key=masked.get))), catalog)


def _truth(root: Path, manifest) -> tuple[np.ndarray, np.ndarray]:
    """(layover or shadow in every acquisition that covers the pixel, seen validly by one) on the
    cell's grid, from the world's own per-acquisition masks (nearest)."""
    cell = parse_cell(CELL)
    masked = np.zeros((PPD, PPD), bool)
    seen = np.zeros((PPD, PPD), bool)
    for entry in manifest.inputs:
        with rasterio.open(mask_path(entry.path)) as src:
            codes = np.zeros((PPD, PPD), np.uint8)
            reproject(rasterio.band(src, 1), codes, dst_transform=cell.transform(PPD), dst_crs="EPSG:4326",
                      resampling=Resampling.nearest)
        masked |= np.isin(codes, (MASK_LAYOVER, MASK_SHADOW))
        seen |= np.isin(codes, (MASK_LAND, MASK_WATER))
    return masked & ~seen, seen


def test_layover_and_shadow_of_the_truth_are_flagged_and_never_classified(steep):
    root, manifest = steep
    truth, _ = _truth(root, manifest)
    files = {p: Path(manifest.run_dir) / "cells" / CELL / e.path for p, e in manifest.ok_cells()[0].files.items()}
    with rasterio.open(files["reason"]) as ds:
        reason = ds.read(1)
    with rasterio.open(files["lulc"]) as ds:
        lulc, nodata = ds.read(1), ds.nodata
    assert truth.sum() > 500, "the steep world must have layover/shadow that no acquisition sees"
    flagged = np.isin(reason, (pixels.LAYOVER, pixels.SHADOW))
    assert (flagged & truth).sum() / truth.sum() >= 0.99
    assert (lulc[truth] == nodata).mean() >= 0.99  # the models' classes never reach what the radar could not see


def test_areas_per_reason_and_class_add_up_to_the_region(steep):
    _, manifest = steep
    table = pd.read_csv(Path(manifest.run_dir) / manifest.products.tables["areas_csv"].path)
    region = table[table.scope == "region"]
    classes = region[region.layer == "lulc"].area_km2.sum()
    reasons = region[(region.layer == "reason") & (region.code != pixels.MAPPED)]
    whole = geometry_km2(parse_cell(CELL).polygon)
    assert classes + reasons.area_km2.sum() == pytest.approx(whole, rel=1e-3)
    by_name = dict(zip(reasons["class"], reasons.area_km2))
    assert by_name["layover"] + by_name["radar shadow"] > 0


def _write_dem(path: Path, world) -> None:
    """The world's own heights (m) on a 0.002-degree grid over the cell and a margin, EPSG:4326."""
    from nationmap.data.synth.noise import lonlat_to_km
    from nationmap.data.synth.world import landscape

    cell, step = parse_cell(CELL), 0.002
    lon = np.arange(cell.lon - 0.3, cell.lon + 1.3, step) + step / 2
    lat = np.arange(cell.lat + 1.3, cell.lat - 0.3, -step) - step / 2
    x, y = lonlat_to_km(*np.meshgrid(lon, lat))
    heights = landscape(x, y, world).elevation_m.astype(np.float32)
    profile = dict(driver="GTiff", dtype="float32", count=1, width=len(lon), height=len(lat), crs="EPSG:4326",
                   transform=rasterio.transform.from_origin(lon[0] - step / 2, lat[0] + step / 2, step, step))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(heights, 1)


def test_a_dem_gives_scenes_without_a_mask_one(steep, tiny_bundles, tmp_path):
    """The same acquisitions without their MSK- sidecars, and the world's heights as a DEM
    (``--dem``): the DEM's layover and shadow are flagged where the world's own masks are."""
    import shutil

    from nationmap.data.catalog import build_catalog
    from nationmap.data.synth.generate import SynthConfig

    root, manifest = steep
    raw = tmp_path / "raw"
    shutil.copytree(root / "raw", raw, ignore=shutil.ignore_patterns("MSK-*", "LINCI-*"))
    build_catalog(raw, tmp_path / "catalog.parquet", executor="serial")
    _keep(tmp_path / "catalog.parquet", pd.read_parquet(root / "catalog.parquet").orbit.iloc[0])
    world = SynthConfig(cells=(CELL,), months=(MONTH,), seed=5, scene_pixel_m=100.0, relief_m=STEEP_RELIEF_M).world
    _write_dem(tmp_path / "dem.tif", world)
    run = run_inference(InferConfig(
        region=CELL, month=MONTH, catalog=str(tmp_path / "catalog.parquet"), lulc_model=str(tiny_bundles["lulc"]),
        water_model=str(tiny_bundles["water"]), out=str(tmp_path / "products"), pixels_per_degree=PPD, overlap=16,
        batch_size=8, executor="serial", cell_block=512, dem=str(tmp_path / "dem.tif")))
    assert run.status == "ok", run.failures
    assert not list(raw.rglob("MSK-*")), "the archive is never written to"
    truth, _ = _truth(root, manifest)
    with rasterio.open(Path(run.run_dir) / "cells" / CELL / run.ok_cells()[0].files["reason"].path) as ds:
        flagged = np.isin(ds.read(1), (pixels.LAYOVER, pixels.SHADOW))
    recall = (flagged & truth).sum() / truth.sum()
    precision = (flagged & truth).sum() / max(1, flagged.sum())
    assert recall >= 0.8 and precision >= 0.5, (recall, precision)


def _keep(catalog: Path, orbit: int) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(catalog)
    pq.write_table(table.filter(pc.equal(table["orbit"], orbit)), catalog)
