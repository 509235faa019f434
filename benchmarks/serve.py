"""The web map under load: tile throughput and latency, /api/maps latency under hostile requests,
and memory over many requests, of ``nationmap serve`` (this checkout) against a baseline tree.

The products root is written here (:func:`write_products_root`): published months of a 2 x 2
cell region with the four national COGs, written by nationmap's own COG writer
(:mod:`nationmap.products.cog`), an area table and a manifest, as a refresh publishes them. Each
server runs in its own process (``python -m nationmap serve``, the baseline with
``PYTHONPATH=<baseline tree>``), one at a time, driven by an aiohttp client in this process: the
load generator shares the machine's cores with the server.

Workloads (the same tile list for both servers, shuffled with one seed):

- tiles: what a viewer asks while browsing: every tile over the region at zooms 7..12 and a ring
  of neighbours (mostly off the products), in random order, each asked once (cold), then the same
  list again (warm: what a second viewer of the month asks); concurrency 1, 4 and 16.
- hostile: 16 clients asking tiles with huge x (1e6..1e23) and zoom 1024 while one client asks
  /api/maps in a loop; the slowest /api/maps answer is the figure (each hostile request has a
  2 s client timeout: the baseline may never answer them).
- memory: 10,000 tile requests (concurrency 8) over a set of distinct tiles larger than the
  server's tile cache; the server's RSS every 1,000 requests.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np

CELLS = ("N35E138", "N35E139", "N36E138", "N36E139")
REGION = ",".join(CELLS)


def _layers():
    from nationmap.data.lulc import load_class_table
    from nationmap.products.layers import product_layers

    table = load_class_table()
    return product_layers(table.scheme("lulc9").classes, table.scheme("water").classes)


def _pixels(product: str, layer, height: int, width: int, seed: int) -> np.ndarray:
    """Plausible product pixels: classes in patches, no data over a 'sea' in one corner."""
    rng = np.random.default_rng(seed)
    patch = max(4, width // 60)
    coarse = rng.integers(0, 9, size=(height // patch + 2, width // patch + 2))
    classes = np.repeat(np.repeat(coarse, patch, 0), patch, 1)[:height, :width]
    rows, cols = np.mgrid[0:height, 0:width]
    sea = rows + cols > 1.6 * max(height, width)
    if product == "lulc":
        codes = np.asarray([c.code for c in layer.classes], dtype=np.uint8)
        values = codes[classes % len(codes)]
    elif product == "water":
        values = (classes == 0).astype(np.uint8)
    elif product == "confidence":
        values = np.clip(40 + 6 * classes, 0, 100).astype(np.uint8)
    else:
        values = (classes % 6 + 1).astype(np.uint8)
    nodata = layer.nodata if layer.nodata is not None else 0
    return np.where(sea, nodata, values).astype(np.uint8)


def _write_run(run: Path, month: str, ppd: int, seed: int) -> None:
    """A complete run directory: four national COGs, the area table, the manifest."""
    from nationmap.data.grid import parse_cell
    from nationmap.files import write_json
    from nationmap.products.cog import open_staging, part_path, translate_to_cog
    from nationmap.records import FileEntry, Products, RunManifest

    west, south = min(parse_cell(c).lon for c in CELLS), min(parse_cell(c).lat for c in CELLS)
    from affine import Affine

    transform = Affine(1 / ppd, 0, west, 0, -1 / ppd, south + 2)
    stem = f"{run.parent.parent.name}_{month}"
    mosaics = {}
    for i, (product, layer) in enumerate(_layers().items()):
        dst = run / "mosaic" / f"{stem}_{product}.tif"
        dst.parent.mkdir(parents=True, exist_ok=True)
        staging = open_staging(part_path(dst), layer, 2 * ppd, 2 * ppd, "EPSG:4326", transform)
        staging.write(_pixels(product, layer, 2 * ppd, 2 * ppd, seed + i), 1)
        translate_to_cog(staging, dst, layer, {"PRODUCT": product})
        mosaics[product] = FileEntry(dst.relative_to(run).as_posix(), _sha256(dst))
    areas = run / "tables" / f"{stem}_areas.csv"
    areas.parent.mkdir(parents=True, exist_ok=True)
    classes = _layers()["lulc"].classes
    lines = ["region,month,scope,cell,layer,code,class,area_km2,share"]
    lines += [f'"{REGION}",{month},region,"{REGION}",lulc,{c.code},{c.name},{1000.0 + 10 * c.code:.6f},'
              f"{1 / len(classes):.6f}" for c in classes]
    areas.write_text("\n".join(lines) + "\n")
    tables = {"areas_csv": FileEntry(areas.relative_to(run).as_posix(), _sha256(areas))}
    manifest = RunManifest(run_id=f"{month}-{run.name}", status="ok", region=REGION, month=month, cells=list(CELLS),
                           products=Products(mosaic=mosaics, tables=tables))
    write_json(run / "manifest.json", manifest)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_products_root(root: Path, ppd: int = 120, months: tuple[str, ...] = ("2022-09", "2022-10"),
                        versions: int = 1) -> Path:
    """A products root as refreshes publish it: ``<root>/<region>/<month>/v1..vN`` and ``latest``
    -> ``vN``. Later versions are hard links to the first (the same products republished)."""
    import os

    from nationmap.data.regions import region_slug

    region = root / region_slug(REGION)
    for m, month in enumerate(months):
        first = region / month / "v1"
        _write_run(first, month, ppd, seed=10 * m)
        for n in range(2, versions + 1):
            shutil.copytree(first, region / month / f"v{n}", copy_function=os.link)
        os.symlink(f"v{versions}", region / month / "latest")
    return root
