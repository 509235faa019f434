"""Dataset preparation: anchors, patches, labels, month split, train/val/test, stats, bad input."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer

from nationmap.data.anchors import sample_anchors
from nationmap.data.catalog import build_catalog
from nationmap.data.dataset import PreparedDataset
from nationmap.data.lulc import find_lulc_tiles
from nationmap.data.prepare import LabelSource, prepare_dataset
from nationmap.data.regions import resolve_region
from nationmap.data.synth.noise import lonlat_to_km
from nationmap.data.synth.world import landscape
from nationmap.errors import InputError, RasterError
from tests.conftest import TINY_CELLS, TINY_PATCH, tiny_prepare_config, tiny_synth_config

REGION = ",".join(TINY_CELLS)


def test_anchors_rebalance_classes(tiny_world):
    tiles = find_lulc_tiles(tiny_world / "lulc")
    anchors, summary = sample_anchors(tiles, 5000, seed=3, executor="serial")
    assert len(anchors) == 5000 == summary["sampled"]
    pixels = pd.Series(summary["pixels_per_code"])
    got = anchors.code.value_counts()
    uniform = 5000 * pixels / pixels.sum()  # expected anchors under uniform sampling
    rare = pixels.idxmin()
    assert got[rare] > 10 * uniform[rare]  # rare classes get far more anchors
    common = pixels.idxmax()
    assert got[common] < 0.5 * uniform[common]
    # equal expected share per class (multinomial noise only)
    assert got.max() / got.min() < 1.6
    # anchors sit on pixels of their class and inside their cell
    for cell, group in anchors.groupby("cell"):
        with rasterio.open(tiles[cell]) as src:
            values = np.array([v[0] for v in src.sample(zip(group.lon, group.lat))])
        assert np.array_equal(values, group.code.to_numpy())
    again, _ = sample_anchors(tiles, 5000, seed=3, executor="serial")
    pd.testing.assert_frame_equal(anchors, again)


def test_every_patch_holds_an_anchor_and_months_do_not_mix(tiny_dataset):
    ds = PreparedDataset(tiny_dataset)
    index = ds.index
    assert (index.n_anchors >= 1).all()
    anchors = pd.read_parquet(tiny_dataset / "anchors.parquet")
    # independently: count anchors inside each kept patch footprint (scene CRS)
    for crs, group in index.groupby("crs"):
        to_scene = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
        ax, ay = to_scene.transform(anchors.lon.to_numpy(), anchors.lat.to_numpy())
        for row in group.sample(min(len(group), 40), random_state=0).itertuples():
            cx, cy = to_scene.transform(row.lon, row.lat)
            half = TINY_PATCH * 200.0 / 2
            inside = (np.abs(ax - cx) < half) & (np.abs(ay - cy) < half)
            assert inside.sum() >= row.n_anchors >= 1
    assert set(index[index.split == "pretrain"].month) == {"2022-10"}
    assert set(index[index.split != "pretrain"].month) == {"2022-09"}
    assert set(index.split) == {"pretrain", "train", "val", "test"}
    # pretraining shards carry no labels; finetuning shards do
    assert all(label is None for _, _, label in ds.iter_patches("pretrain"))
    assert all(label is not None for _, _, label in ds.iter_patches("val"))


def test_splits_disjoint_and_stats(tiny_dataset):
    ds = PreparedDataset(tiny_dataset)
    index = ds.index
    ids = {s: set(index.patch_id[index.split == s]) for s in ("pretrain", "train", "val", "test")}
    assert sum(map(len, ids.values())) == len(set().union(*ids.values())) == len(index)
    shard_ids = {s: {pid for pid, _, _ in ds.iter_patches(s)} for s in ids}
    assert shard_ids == ids
    # normalisation = mean/std of sigma0 dB over the train patches, recomputed from the shards
    values = np.concatenate([sar[np.isfinite(sar)] for _, sar, _ in ds.iter_patches("train")])
    norm = ds.meta["normalisation"]["train"]
    assert norm["mean_db"] == pytest.approx(values.mean(), abs=0.02)  # float16 storage
    assert norm["std_db"] == pytest.approx(values.std(), abs=0.02)
    freq = ds.meta["class_frequencies"]["train"]["lulc9"]
    assert sum(freq["frequency"]) == pytest.approx(1.0) and len(freq["names"]) == 9
    counts = np.zeros(15, np.int64)
    for _, sar, label in ds.iter_patches("train"):
        counts += np.bincount(label.ravel(), minlength=15)[:15]
    assert ds.meta["class_frequencies"]["train"]["source"] == {str(c): int(counts[c]) for c in range(1, 15)}


def test_image_and_label_line_up_across_cell_border(tiny_dataset):
    """Labels of UTM patches crossing the 138 E cell border match the world's truth at the
    patch pixel centres better than any 1-pixel shift of them would."""
    ds = PreparedDataset(tiny_dataset)
    index = ds.index
    crossing = index[(index.lon_min < 138) & (index.lon_max > 138) & (index.split != "pretrain")]
    assert len(crossing) >= 2
    world = tiny_synth_config().world
    labels = {pid: lab for s in ("train", "val", "test") for pid, _, lab in ds.iter_patches(s)}
    scores, shifted = [], []
    for row in crossing.itertuples():
        with rasterio.open(_scene_path(tiny_dataset, row.scene_id)) as src:
            transform = src.window_transform(rasterio.windows.Window(row.col_off, row.row_off, TINY_PATCH, TINY_PATCH))
            crs = src.crs
        rr, cc = np.mgrid[0:TINY_PATCH, 0:TINY_PATCH]
        xs, ys = transform @ (cc + 0.5, rr + 0.5)
        lon, lat = Transformer.from_crs(crs, 4326, always_xy=True).transform(xs, ys)
        truth = landscape(*lonlat_to_km(np.asarray(lon), np.asarray(lat)), world).codes
        label = labels[row.patch_id]
        ok = (label > 0) & (truth > 0)
        scores.append((label == truth)[ok].mean())
        shifted.append(max((np.roll(label, s, axis=a) == truth)[ok][2:-2].mean() for a in (0, 1) for s in (-1, 1)))
    assert np.mean(scores) > 0.85
    assert np.mean(scores) > np.mean(shifted) + 0.03


def _scene_path(dataset, scene_id):
    report = json.loads((dataset / "report.json").read_text())
    return next(s["path"] for s in report["scenes"] if s["scene_id"] == scene_id)


def test_spatial_split_never_straddles(tiny_world, tiny_catalog, tmp_path):
    out = tmp_path / "spatial"
    cfg = tiny_prepare_config(split="spatial", block_deg=0.1, pretrain_months=())
    prepare_dataset(tiny_catalog, tiny_world / "lulc", out, cfg, resolve_region(REGION), executor="serial")
    index = PreparedDataset(out).index
    assert set(index.split) == {"train", "val", "test"}
    boxes = index[["lon_min", "lat_min", "lon_max", "lat_max"]].to_numpy()
    split = index.split.to_numpy()
    for i in range(len(index)):
        other = split != split[i]
        hit = (boxes[other, 0] < boxes[i, 2]) & (boxes[other, 2] > boxes[i, 0]) & \
              (boxes[other, 1] < boxes[i, 3]) & (boxes[other, 3] > boxes[i, 1])
        assert not hit.any(), f"{index.patch_id[i]} overlaps a patch of another split"


def _digests(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*.parquet"))}


def test_deterministic_and_never_damages_existing(tiny_world, tiny_catalog, tiny_dataset, tmp_path, monkeypatch):
    again = tmp_path / "again"
    prepare_dataset(tiny_catalog, tiny_world / "lulc", again, tiny_prepare_config(), resolve_region(REGION), executor="serial")
    assert _digests(again) == _digests(tiny_dataset)
    before = _digests(again)
    with pytest.raises(InputError, match="exists"):
        prepare_dataset(tiny_catalog, tiny_world / "lulc", again, tiny_prepare_config(), resolve_region(REGION), executor="serial")

    import nationmap.data.prepare as prep

    def crash(*args, **kwargs):
        raise RuntimeError("worker lost")

    monkeypatch.setattr(prep, "run_tasks", crash)
    with pytest.raises(RuntimeError):
        prepare_dataset(tiny_catalog, tiny_world / "lulc", again, tiny_prepare_config(), resolve_region(REGION),
                        overwrite=True, executor="serial")
    assert _digests(again) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again")]


def test_bad_scenes_are_reported_and_the_run_goes_on(world_copy, tmp_path):
    cat = tmp_path / "cat.parquet"
    build_catalog(world_copy, cat, executor="serial")
    # scenes over N35E138 alone lose their labels; one catalogued scene is truncated afterwards
    (world_copy / "lulc" / "LC_N35E138.tif").unlink()
    import pandas as pd

    df = pd.read_parquet(cat)
    sep = df[df.month == "2022-09"].sort_values("lon_min")
    victim = sep.iloc[0].path
    data = open(victim, "rb").read()
    open(victim, "wb").write(data[: len(data) // 3])
    report = prepare_dataset(cat, world_copy / "lulc", tmp_path / "ds", tiny_prepare_config(), resolve_region(REGION),
                             executor="serial")
    reasons = {f["scene_id"]: f["reason"] for f in report["failed"]}
    assert any(why in reasons[sep.iloc[0].id] for why in ("read failed", "cannot open"))
    import shapely

    in_region = shapely.intersects(shapely.from_wkb(df.geometry.to_numpy()), resolve_region(REGION).geometry)
    east_only = df[in_region & (df.lon_min > 138.0).to_numpy()]  # in the region, all east of 138 E
    assert len(east_only) and all("no overlapping labels" in reasons[i] for i in east_only.id)
    assert report["patches"]["train"] > 0


def _write_tile(path, lon, lat, ppd, values):
    profile = dict(driver="GTiff", width=ppd, height=ppd, count=1, dtype="uint8", crs="EPSG:4326", nodata=0,
                   transform=rasterio.transform.from_origin(lon, lat + 1, 1 / ppd, 1 / ppd))
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(values, 1)


def test_label_source_pastes_neighbouring_tiles_exactly(tmp_path):
    """Two 1-degree tiles side by side (20 px/degree): a read across their border equals the
    tiles' own pixels at the right offsets, padded with 0 outside them."""
    rng = np.random.default_rng(0)
    west, east = rng.integers(1, 12, (20, 20), dtype=np.uint8), rng.integers(1, 12, (20, 20), dtype=np.uint8)
    _write_tile(tmp_path / "LC_N35E137.tif", 137, 35, 20, west)
    _write_tile(tmp_path / "LC_N35E138.tif", 138, 35, 20, east)
    _write_tile(tmp_path / "LC_N34E137.tif", 137, 34, 10, np.ones((10, 10), np.uint8))  # another grid, not read
    source = LabelSource({"N35E137": str(tmp_path / "LC_N35E137.tif"), "N35E138": str(tmp_path / "LC_N35E138.tif")})
    try:
        # 137.5..138.25 E, 35.3..35.8 N: columns 10..19 of the west tile and 0..4 of the east, rows 4..13
        codes, transform = source.read_ll((137.5, 35.3, 138.25, 35.8), pad=2)
        assert codes.shape == (10 + 4, 15 + 4)
        assert transform.c == pytest.approx(137.5 - 2 / 20) and transform.f == pytest.approx(35.8 + 2 / 20)
        np.testing.assert_array_equal(codes[2:-2, 2:-2], np.hstack([west[4:14, 10:20], east[4:14, 0:5]]))
        np.testing.assert_array_equal(codes[:, 2:-2][0:2], np.hstack([west[2:4, 10:20], east[2:4, 0:5]]))
        assert source.read_ll((139.5, 35.3, 139.6, 35.4))[0].size == 0  # no tile there
    finally:
        source.close()
    mixed = LabelSource({"N35E137": str(tmp_path / "LC_N35E137.tif"), "N34E137": str(tmp_path / "LC_N34E137.tif")})
    with pytest.raises(RasterError, match="px/degree grid"):
        mixed.read_ll((137.2, 34.8, 137.4, 35.2))
    mixed.close()


def test_label_strips_match_one_warp_per_patch(tiny_world, tiny_catalog, monkeypatch):
    """Patch labels cut from strips (one patch row per strip, or the whole scene in one) against
    a warp of each patch on its own: the same GDAL nearest, differing at most where its
    approximate transformer (0.125 px) lands a pixel centre on the other side of a class edge."""
    import nationmap.data.prepare as prepare
    from nationmap.data.catalog import read_catalog
    from nationmap.data.sar import SarRaster

    tiles = {k: str(v) for k, v in find_lulc_tiles(tiny_world / "lulc").items()}
    path = read_catalog(tiny_catalog).path.iloc[0]
    P = TINY_PATCH
    with SarRaster(path) as raster:
        spans = {r: (0, raster.width // P - 1) for r in range(raster.height // P)}
        cuts = {}
        for strip_pixels in (1, 10**9):
            monkeypatch.setattr(prepare, "STRIP_PIXELS", strip_pixels)
            source = LabelSource(tiles)
            strips = prepare.LabelStrips(source, raster, P, spans)
            assert strips.rows == 1 if strip_pixels == 1 else strips.rows >= len(spans)  # one row or all
            cuts[strip_pixels] = {(r, c): strips.patch(r, c) for r in spans for c in range(spans[r][1] + 1)}
            single = {k: source.label(raster.crs, raster.dataset.window_transform(rasterio.windows.Window(k[1] * P, k[0] * P, P, P)), P, P)
                      for k in cuts[strip_pixels]}
            source.close()
    for key, one in single.items():
        np.testing.assert_array_equal(cuts[1][key], cuts[10**9][key])  # a scanline is warped alike in both
        assert (one == cuts[1][key]).mean() > 0.98
    assert sum((v > 0).sum() for v in single.values()) > 0.25 * len(single) * P * P  # labels, not an empty sea
