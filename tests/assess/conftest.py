"""A small map and its reference: a reference tile of JAXA codes over cell N36E140 (1/600 degree,
made by a seeded script, torchgeo's way) and a map of it in the lulc9 scheme with known errors."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from nationmap.data.lulc import load_class_table

PPD = 600  # pixels per degree
SIZE = 600


def _profile(nodata: int) -> dict:
    return dict(driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="uint8", crs="EPSG:4326",
                transform=from_origin(140.0, 37.0, 1 / PPD, 1 / PPD), nodata=nodata, tiled=True,
                blockxsize=256, blockysize=256)


def reference_codes(seed: int = 0) -> np.ndarray:
    """(600, 600) JAXA codes in blocks of 20 px: forest, paddy and crop, a river, a town, rare
    solar panels and wetland; a no-data strip at the bottom."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice([6, 8, 9, 3, 4, 5, 2, 10, 12, 13], size=(SIZE // 20, SIZE // 20),
                        p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.08, 0.06, 0.03, 0.015, 0.015])
    codes = np.kron(blocks, np.ones((20, 20), dtype=np.uint8)).astype(np.uint8)
    codes[:, 300:304] = 1  # a river, 4 px wide
    codes[-30:, :] = 0  # no data
    return codes


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    """{'reference_dir', 'map', 'truth' (lulc9 codes, 0 no data), 'mapped' (the map's codes)}."""
    root = tmp_path_factory.mktemp("assess-world")
    codes = reference_codes()
    ref_dir = root / "reference"
    ref_dir.mkdir()
    with rasterio.open(ref_dir / "LC_N36E140.tif", "w", **_profile(0)) as ds:
        ds.write(codes, 1)
    scheme = load_class_table().scheme("lulc9")
    truth = scheme.remap(codes)
    rng = np.random.default_rng(1)
    mapped = truth.copy()
    wrong = (rng.random(truth.shape) < 0.12) & (truth > 0)  # 12 % of the land mapped as another class
    mapped[wrong] = rng.integers(1, 10, int(wrong.sum()))
    mapped[(truth == 8)] = 4  # wetland always mapped as grassland: a class the map never has
    mapped[-30:, :] = 1  # the map's water where the reference has no data (the open sea beyond its coast)
    path = root / "map_lulc.tif"
    with rasterio.open(path, "w", **_profile(0)) as ds:
        ds.write(mapped, 1)
        ds.update_tags(1, **{f"CLASS_{c.code}": c.name for c in scheme.classes})
    return {"root": root, "reference_dir": ref_dir, "map": path, "truth": truth, "mapped": mapped}
