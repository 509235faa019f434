"""Red team, bad values and data inputs: corrupt SAR values, foreign LULC codes, foreign catalogs,
corrupt prepared datasets and months outside the mission. Each case asserts what the README
promises: an honest exit code, one ``error:`` line without traceback where the input is refused,
no NaN written as a valid probability, and no existing output changed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
from rasterio.windows import Window

from nationmap.data.catalog import build_catalog, read_catalog
from nationmap.data.dataset import PreparedDataset
from nationmap.data.lulc import load_class_table
from nationmap.data.sar import SIGMA0_DB_RANGE, SarRaster
from nationmap.errors import InputError
from nationmap.products import pixels
from tests.conftest import TINY_PATCH
from tests.reliability.conftest import assert_refused, run_cli, tree_hashes

MONTH = "2022-09"
CROP = 96  # px of the scene kept for the inference cases: 4 windows of 64 px, seconds on a CPU
PPD = 600  # the tiny world's LULC grid (pixels per degree)


# ------------------------------------------------------------------------------------ helpers
def first_scene(world: Path) -> Path:
    """The first HH scene of MONTH in a synthetic world (uint16 DN)."""
    return sorted(world.glob(f"alos2/{MONTH}/*/IMG-HH-*.tif"))[0]


def one_scene_raw(world: Path, raw: Path) -> Path:
    """A raw directory holding the first scene of MONTH only (with its summary.txt)."""
    src = first_scene(world).parent
    # without the world's mask sidecars: the tests rewrite the scene on a cropped grid they do not fit
    shutil.copytree(src, raw / MONTH / src.name, ignore=shutil.ignore_patterns("MSK-*", "LINCI-*"))
    return next((raw / MONTH / src.name).glob("IMG-HH-*.tif"))


def write_float_scene(src: Path, dst: Path, value: float | None, crop: int = CROP, units: str = "dB",
                      dtype: str = "float32", every: int = 0) -> tuple[int, int]:
    """Write the centre ``crop`` x ``crop`` of the DN scene ``src`` as calibrated float sigma0 at
    ``dst`` (unit tag ``units``), with ``value`` at one valid pixel (and, with ``every``, at every
    ``every``-th valid pixel of every ``every``-th row); returns the one pixel (row, col)."""
    with SarRaster(src) as raster:
        window = Window((raster.width - crop) // 2, (raster.height - crop) // 2, crop, crop)
        sigma = raster.read(window)
        profile = {**raster.dataset.profile, "dtype": dtype, "nodata": float("nan"), "width": crop,
                   "height": crop, "transform": raster.dataset.window_transform(window), "tiled": False}
    data = sigma.db if units == "dB" else sigma.linear
    data = np.where(sigma.valid, data, np.nan)
    rows, cols = np.nonzero(sigma.valid)
    pixel = (int(rows[len(rows) // 2]), int(cols[len(cols) // 2]))
    if value is not None:
        data[pixel] = value
        if every:
            grid = np.zeros_like(sigma.valid)
            grid[::every, ::every] = True
            data[grid & sigma.valid] = value
    profile.pop("blockxsize", None), profile.pop("blockysize", None)
    with rasterio.open(dst, "w", **profile) as out:
        out.write(data.astype(dtype), 1)
        out.units = (units,)
    return pixel


def cell_of(path: Path) -> str:
    """The 1-degree cell holding the centre of a raster."""
    import pyproj

    with rasterio.open(path) as ds:
        x, y = ds.xy(ds.height // 2, ds.width // 2)
        lon, lat = pyproj.Transformer.from_crs(ds.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return f"N{int(np.floor(lat)):02d}E{int(np.floor(lon)):03d}"


def infer_args(catalog: Path, world: Path, bundles: dict, out: Path, region: str, tmp: Path) -> list:
    config = tmp / "infer.toml"
    config.write_text("[infer]\n")
    return ["infer", "--region", region, "--date", MONTH, "--config", config, "--catalog", catalog,
            "--lulc-model", bundles["lulc"], "--water-model", bundles["water"], "--out", out,
            "--lulc-dir", world / "lulc", "--pixels-per-degree", PPD, "--overlap", 16, "--batch-size", 8,
            "--executor", "serial", "--keep-scenes", "--gpus-per-actor", 0]


def manifest_of(out: Path) -> dict:
    return json.loads(next(out.glob(f"*/{MONTH}/manifest.json")).read_text())


def prepare_args(catalog: Path, lulc: Path, out: Path) -> list:
    return ["data", "prepare", "--catalog", catalog, "--lulc-dir", lulc, "--out", out, "--region",
            "N35E137,N35E138", "--pretrain-months", "", "--finetune-months", MONTH, "--anchors", 3000,
            "--patch-size", TINY_PATCH, "--executor", "serial"]


@pytest.fixture(scope="module")
def float_scene_world(tiny_world, tmp_path_factory):
    """A raw directory with one float dB scene holding 3.4e38 at one valid pixel, and its catalog."""
    root = tmp_path_factory.mktemp("float_world")
    scene = one_scene_raw(tiny_world, root / "raw")
    pixel = write_float_scene(first_scene(tiny_world), scene, 3.4e38)
    catalog = root / "catalog.parquet"
    build_catalog(root / "raw", catalog, executor="serial")
    return scene, pixel, catalog


@pytest.fixture(scope="module")
def small_dataset(tiny_world, tmp_path_factory) -> Path:
    """A dataset prepared from one scene (finetuning month only): the corrupt-dataset cases."""
    root = tmp_path_factory.mktemp("small_dataset")
    one_scene_raw(tiny_world, root / "raw")
    build_catalog(root / "raw", root / "catalog.parquet", executor="serial")
    outcome = run_cli(prepare_args(root / "catalog.parquet", tiny_world / "lulc", root / "ds"))
    assert outcome.code == 0, outcome.output
    return root / "ds"


@pytest.fixture()
def dataset_copy(small_dataset, tmp_path) -> Path:
    dst = tmp_path / "ds"
    shutil.copytree(small_dataset, dst)
    return dst


# ---------------------------------------------------------------- 1. SAR values: no data, never NaN
@pytest.mark.parametrize("value", [3.4e38, np.inf, -np.inf, 1e4, -1e3])
def test_extreme_db_value_is_no_data(tiny_world, tmp_path, value):
    """A float dB raster with one non-finite or unphysical value: that pixel is no data, the rest
    reads exactly as the clean raster."""
    clean, bad = tmp_path / "clean.tif", tmp_path / "bad.tif"
    write_float_scene(first_scene(tiny_world), clean, None, crop=64)
    pixel = write_float_scene(first_scene(tiny_world), bad, value, crop=64)
    with SarRaster(clean) as a, SarRaster(bad) as b:
        ref, got = a.read(), b.read()
    assert not got.valid[pixel] and np.isnan(got.db[pixel])
    ref.valid[pixel] = False
    np.testing.assert_array_equal(got.valid, ref.valid)
    np.testing.assert_array_equal(got.db[got.valid], ref.db[ref.valid])
    assert np.isfinite(got.db[got.valid]).all()


@pytest.mark.parametrize("value", [1e-30, 1e30, 3.4e38])
def test_linear_power_outside_the_physical_range_is_no_data(tiny_world, tmp_path, value):
    path = tmp_path / "linear.tif"
    pixel = write_float_scene(first_scene(tiny_world), path, value, crop=64, units="linear")
    with SarRaster(path) as raster:
        sigma = raster.read()
    assert not sigma.valid[pixel]
    lo, hi = SIGMA0_DB_RANGE
    assert ((sigma.db[sigma.valid] >= lo) & (sigma.db[sigma.valid] <= hi)).all()


def test_dn_beyond_any_product_range_is_no_data(tmp_path):
    """An int32 DN raster: DN 2**31-1 is about +104 dB, no backscatter; DN 1000 is a normal pixel."""
    dn = np.full((8, 8), 1000, np.int32)
    dn[3, 4] = 2**31 - 1
    profile = dict(driver="GTiff", dtype="int32", count=1, width=8, height=8, crs="EPSG:32653",
                   transform=rasterio.Affine(75.0, 0, 500_000.0, 0, -75.0, 3_950_000.0))
    with rasterio.open(tmp_path / "dn.tif", "w", **profile) as dst:
        dst.write(dn, 1)
    with SarRaster(tmp_path / "dn.tif") as raster:
        sigma = raster.read()
    assert sigma.valid.sum() == 63 and not sigma.valid[3, 4]
    assert np.isfinite(sigma.db[sigma.valid]).all()


def test_extreme_value_scene_is_inferred_with_finite_probabilities(float_scene_world, tiny_world, tiny_bundles, tmp_path):
    """The silent corruption of issue 16: before, one 3.4e38 pixel turned a window's probabilities
    into NaN, written as valid zeros, status ok. Now the pixel is no data and every valid pixel's
    LULC probabilities sum to one."""
    scene, pixel, catalog = float_scene_world
    out = tmp_path / "out"
    outcome = run_cli(infer_args(catalog, tiny_world, tiny_bundles, out, cell_of(scene), tmp_path))
    assert outcome.code == 0, outcome.output
    assert "Traceback" not in outcome.output
    manifest = manifest_of(out)
    assert manifest["status"] == "ok"
    (raster,) = out.glob(f"*/{MONTH}/.work/scenes/*.tif")
    with rasterio.open(raster) as ds:
        bands = ds.read().astype(np.int64)
    valid = bands[-2] == 255  # validity, then the no-data reason
    assert not valid[pixel] and bands[-1][pixel] == pixels.INVALID  # an invalid value, not "not observed"
    lulc = bands[:9].sum(axis=0)
    assert valid.sum() > 0.5 * valid.size
    assert (np.abs(lulc[valid] - 255) <= 9).all(), "valid pixels with probabilities that do not sum to one"


def nan_bundle(src: Path, dst: Path) -> Path:
    """A copy of the bundle ``src`` whose last weight tensor is NaN (a diverged model)."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    last = sorted(weights)[-1]
    weights[last] = weights[last].clone().fill_(float("nan"))
    save_file(weights, dst / "model.safetensors")
    return dst


def test_model_giving_nan_fails_the_scene_never_ok(float_scene_world, tiny_world, tiny_bundles, tmp_path):
    """Model outputs are checked before they are written: non-finite probabilities fail the scene
    with the reason, and the run is not ok."""
    scene, _, catalog = float_scene_world
    bundles = {"lulc": nan_bundle(tiny_bundles["lulc"], tmp_path / "nan-lulc"), "water": tiny_bundles["water"]}
    out = tmp_path / "out"
    outcome = run_cli(infer_args(catalog, tiny_world, bundles, out, cell_of(scene), tmp_path))
    assert outcome.code not in (0, 2), outcome.output
    assert "Traceback" not in outcome.output
    manifest = manifest_of(out)
    assert manifest["status"] != "ok"
    reasons = [f["reason"] for f in manifest["failures"] if f["what"] == "scene"]
    assert reasons and all("non-finite" in r for r in reasons)
    assert not list(out.glob(f"*/{MONTH}/.work/scenes/*.tif"))  # nothing written as probabilities


def test_prepare_never_stores_extreme_values(tiny_world, tmp_path):
    """Dataset preparation reads the same way: with 3.4e38 at every 8th pixel of every 8th row, the
    normalisation stays finite and no shard holds inf (float16 storage turns 3.4e38 into inf)."""
    scene = one_scene_raw(tiny_world, tmp_path / "raw")
    write_float_scene(first_scene(tiny_world), scene, 3.4e38, every=8)
    catalog = tmp_path / "catalog.parquet"
    build_catalog(tmp_path / "raw", catalog, executor="serial")
    out = tmp_path / "ds"
    outcome = run_cli(prepare_args(catalog, tiny_world / "lulc", out))
    assert outcome.code == 0, outcome.output
    meta = json.loads((out / "dataset.json").read_text())
    stats = meta["normalisation"]["train"]
    assert stats is not None and np.isfinite([stats["mean_db"], stats["std_db"]]).all()
    ds = PreparedDataset(out)
    patches = [sar for split in ("train", "val", "test") for _, sar, _ in ds.iter_patches(split)]
    assert patches and not any(np.isinf(sar).any() for sar in patches)


# --------------------------------------------------------------------- 2. LULC codes outside the table
def relabel_tiles(world: Path, dst: Path, fn) -> Path:
    """Copies of the world's LULC tiles with ``fn(codes) -> codes`` applied."""
    dst.mkdir()
    for tile in sorted((world / "lulc").glob("LC_*.tif")):
        with rasterio.open(tile) as src:
            profile, codes = src.profile, src.read(1)
        codes = fn(codes)
        profile["dtype"] = codes.dtype.name
        with rasterio.open(dst / tile.name, "w", **profile) as out:
            out.write(codes, 1)
    return dst


def test_unknown_lulc_codes_are_no_data_not_classes(float_scene_world, tiny_world, tmp_path):
    """Codes outside the class table (here 99 where the tiles say grassland) are ignored as no data,
    as TorchGeo and Raster Vision treat them (ignore_index), and named in the dataset's report."""
    _, _, catalog = float_scene_world
    lulc = relabel_tiles(tiny_world, tmp_path / "lulc", lambda c: np.where(c == 5, 99, c).astype(np.uint8))
    out = tmp_path / "ds"
    outcome = run_cli(prepare_args(catalog, lulc, out))
    assert outcome.code == 0, outcome.output
    anchors = pd.read_parquet(out / "anchors.parquet")
    assert len(anchors) and 99 not in set(anchors.code)
    meta = json.loads((out / "dataset.json").read_text())
    assert "99" in {str(c) for c in meta["anchors"]["unknown_codes"]}
    ds = PreparedDataset(out)
    for split in ("train", "val", "test"):
        for _, _, label in ds.iter_patches(split):
            assert set(np.unique(label)) <= {0, *load_class_table().codes}


def test_lulc_tiles_of_a_foreign_product_are_refused(float_scene_world, tiny_world, tmp_path):
    _, _, catalog = float_scene_world
    lulc = relabel_tiles(tiny_world, tmp_path / "lulc", lambda c: np.where(c > 0, c + 100, 0).astype(np.uint8))
    outcome = run_cli(prepare_args(catalog, lulc, tmp_path / "ds"))
    assert_refused(outcome, 2, "class table")
    assert not (tmp_path / "ds").exists() and not list(tmp_path.glob(".ds*"))


def test_lulc_tiles_not_uint8_are_refused(float_scene_world, tiny_world, tmp_path):
    _, _, catalog = float_scene_world
    lulc = relabel_tiles(tiny_world, tmp_path / "lulc", lambda c: c.astype(np.uint16) * 100)
    outcome = run_cli(prepare_args(catalog, lulc, tmp_path / "ds"))
    assert_refused(outcome, 2, "uint16")
    assert not (tmp_path / "ds").exists()


# -------------------------------------------------------------------------- 3. foreign catalogs
@pytest.fixture()
def catalog_table(tiny_catalog) -> pa.Table:
    return pq.read_table(tiny_catalog)


def catalog_refused(path: Path, *words: str) -> None:
    """``data list`` on a bad catalog: one error line naming it, exit 2."""
    before = tree_hashes(path.parent)
    assert_refused(run_cli(["data", "list", path]), 2, path.name, *words)
    with pytest.raises(InputError):
        read_catalog(path)
    assert tree_hashes(path.parent) == before


def test_catalog_missing_columns_is_one_line(catalog_table, tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(catalog_table.drop(["geometry", "month"]), path)
    catalog_refused(path, "geometry", "month")


def test_catalog_column_of_the_wrong_type_is_one_line(catalog_table, tmp_path):
    path = tmp_path / "foreign.parquet"
    i = catalog_table.schema.get_field_index("width")
    pq.write_table(catalog_table.set_column(i, "width", pa.array([f"{w}px" for w in catalog_table["width"].to_pylist()])), path)
    catalog_refused(path, "width")


def test_catalog_geometry_not_wkb_is_one_line(catalog_table, tmp_path):
    path = tmp_path / "foreign.parquet"
    i = catalog_table.schema.get_field_index("geometry")
    garbage = pa.array([b"POLYGON((0 0, 1 1))"] * catalog_table.num_rows, pa.binary())
    pq.write_table(catalog_table.set_column(i, "geometry", garbage), path)
    catalog_refused(path, "geometry")


def test_catalog_self_intersecting_footprint_is_one_line(catalog_table, tmp_path):
    import shapely

    path = tmp_path / "foreign.parquet"
    bowtie = shapely.to_wkb(shapely.Polygon([(137, 35), (138, 36), (138, 35), (137, 36)]))
    geoms = catalog_table["geometry"].to_pylist()
    geoms[0] = bowtie
    i = catalog_table.schema.get_field_index("geometry")
    pq.write_table(catalog_table.set_column(i, "geometry", pa.array(geoms, pa.binary())), path)
    catalog_refused(path, "footprint")


def test_catalog_update_over_a_foreign_catalog_changes_nothing(catalog_table, world_copy, tmp_path):
    path = tmp_path / "foreign.parquet"
    pq.write_table(catalog_table.drop(["sha256"]), path)
    before = path.read_bytes()
    assert_refused(run_cli(["data", "catalog", world_copy, "--out", path, "--executor", "serial"]), 2, "sha256")
    assert path.read_bytes() == before


# ----------------------------------------------------------------------- 4. corrupt prepared datasets
def test_dataset_json_not_json_is_one_line(dataset_copy):
    (dataset_copy / "dataset.json").write_text('{"format": "nationmap-dataset/1", "config": ')
    assert_refused(run_cli(["data", "info", dataset_copy]), 2, "dataset.json")


@pytest.mark.parametrize("edit, word", [
    (lambda m: m.pop("patches"), "patches"),
    (lambda m: m["config"].update(patch_size="32"), "patch_size"),
    (lambda m: m.update(format="nationmap-dataset/9"), "nationmap-dataset/9"),
    (lambda m: m["class_table"].pop("classes"), "class_table"),
])
def test_dataset_metadata_with_wrong_keys_is_one_line(dataset_copy, edit, word):
    meta = json.loads((dataset_copy / "dataset.json").read_text())
    edit(meta)
    (dataset_copy / "dataset.json").write_text(json.dumps(meta))
    assert_refused(run_cli(["data", "info", dataset_copy]), 2, word)


def test_truncated_shard_is_one_line(dataset_copy, tiny_bundles):
    shard = sorted((dataset_copy / "shards" / "test").glob("*.parquet"))[0]
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    before = tree_hashes(dataset_copy)
    outcome = run_cli(["eval", "lulc", "--model", tiny_bundles["lulc"], "--data", dataset_copy,
                       "--out", dataset_copy.parent / "eval"])
    assert_refused(outcome, 2, shard.name)
    assert tree_hashes(dataset_copy) == before


def test_garbage_index_and_shard_blobs_are_input_errors(dataset_copy):
    (dataset_copy / "index.parquet").write_bytes(b"not parquet at all")
    ds = PreparedDataset(dataset_copy)
    with pytest.raises(InputError, match="index.parquet"):
        ds.index
    shard = sorted((dataset_copy / "shards" / "train").glob("*.parquet"))[0]
    table = pq.read_table(shard)
    i = table.schema.get_field_index("sar_db")
    pq.write_table(table.set_column(i, "sar_db", pa.array([b"\x00" * 10] * table.num_rows, pa.binary())), shard)
    with pytest.raises(InputError, match=shard.name):
        list(ds.iter_patches("train"))


# ------------------------------------------------------------------------------- 5. extreme months
@pytest.mark.parametrize("months", ["0001-01", "9999-12", "0000-01", "2014-04", "2099-01", "2022-09,2101-01"])
def test_synth_refuses_months_alos2_cannot_hold(guarded, months):
    guarded.snapshot()
    target = guarded.out / "world"
    outcome = run_cli(["data", "synth", target, "--region", "N35E137", "--months", months, "--executor", "serial"])
    assert_refused(outcome, 2, "month")
    assert not target.exists()
    guarded.check()


@pytest.mark.parametrize("args", [["data", "list", "CATALOG", "--month", "9999-12"],
                                  ["plan", "--region", "N35E137", "--date", "0000-07"]])
def test_months_outside_the_calendar_are_one_line(args, tiny_catalog):
    outcome = run_cli([str(tiny_catalog) if a == "CATALOG" else a for a in args])
    assert_refused(outcome, 2, "month")
