"""Label-guided anchor sampling by inverse class frequency (the paper's dataset construction).

Each present class receives an equal expected share of the N anchors (a pixel's chance is
inversely proportional to its class's pixel count); within a class, anchors are an exact
uniform sample without replacement over all its pixels in all tiles, drawn in two streaming
passes over row blocks (counts, then selection by rank), so a tile is never held whole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from nationmap.parallel import run_tasks

BLOCK_ROWS = 1024


def _blocks(src):
    for row in range(0, src.height, BLOCK_ROWS):
        window = Window(0, row, src.width, min(BLOCK_ROWS, src.height - row))
        yield window, src.read(1, window=window)


def tile_counts(path: str | Path) -> np.ndarray:
    """(256,) int64 pixel count per code of a LULC tile."""
    counts = np.zeros(256, dtype=np.int64)
    with rasterio.open(path) as src:
        for _, block in _blocks(src):
            counts += np.bincount(block.ravel(), minlength=256)
    return counts


def _counts_task(path: str) -> np.ndarray:
    return tile_counts(path)


def _select_task(args) -> pd.DataFrame:
    """Anchors of one tile: ``ranks[code]`` are sorted ranks among that code's pixels."""
    cell, path, ranks = args
    lons, lats, codes = [], [], []
    seen = {code: 0 for code in ranks}
    cursor = {code: 0 for code in ranks}
    with rasterio.open(path) as src:
        for window, block in _blocks(src):
            flat = block.ravel()
            for code, r in ranks.items():
                if cursor[code] >= len(r):
                    continue
                where = np.flatnonzero(flat == code)
                lo = seen[code]
                hi = lo + where.size
                stop = cursor[code] + np.searchsorted(r[cursor[code]:], hi)
                picked = where[r[cursor[code]:stop] - lo]
                cursor[code] = stop
                seen[code] = hi
                if picked.size:
                    rows = window.row_off + picked // src.width
                    cols = picked % src.width
                    x, y = src.transform @ (cols + 0.5, rows + 0.5)
                    lons.append(np.asarray(x))
                    lats.append(np.asarray(y))
                    codes.append(np.full(picked.size, code, dtype=np.uint8))
    if not lons:
        return pd.DataFrame({"lon": [], "lat": [], "code": np.array([], np.uint8), "cell": []})
    return pd.DataFrame({"lon": np.concatenate(lons), "lat": np.concatenate(lats),
                         "code": np.concatenate(codes), "cell": cell})


def sample_anchors(tiles: dict[str, Path], n: int, seed: int, nodata: int = 0, codes=None,
                   executor: str = "ray") -> tuple[pd.DataFrame, dict]:
    """Sample ``n`` anchors over ``tiles`` (cell -> path) by inverse class frequency.

    ``codes``: the class table's codes; any other code is no data, never a class of its own
    (``None``: every code but ``nodata`` is a class). Returns (anchors with lon, lat (pixel
    centres, degrees), code, cell; summary with the per-class pixel counts and anchor counts, and
    the pixel counts of the codes outside the table). A class with fewer pixels than its share
    gives all of its pixels.
    """
    cells = sorted(tiles)
    per_tile = np.array(run_tasks(_counts_task, [str(tiles[c]) for c in cells], desc="anchor pass 1/2 (class counts)",
                                  executor=executor)).reshape(len(cells), 256)
    per_tile[:, nodata] = 0
    outside = np.zeros(256, dtype=bool)
    if codes is not None:
        outside[:] = True
        outside[list(codes)] = False
    unknown = {int(c): int(per_tile[:, c].sum()) for c in np.flatnonzero(outside & (per_tile.sum(axis=0) > 0))}
    per_tile[:, outside] = 0
    totals = per_tile.sum(axis=0)
    present = np.flatnonzero(totals)
    rng = np.random.default_rng([seed, 1])
    want = dict(zip(present.tolist(), rng.multinomial(n, np.full(len(present), 1.0 / len(present))).tolist())) if len(present) else {}
    take = {c: min(k, int(totals[c])) for c, k in want.items()}
    # split each class's anchors over tiles exactly (multivariate hypergeometric), then ranks
    jobs = []
    tile_ranks: list[dict] = [{} for _ in cells]
    for code, k in take.items():
        if k == 0:
            continue
        alloc = rng.multivariate_hypergeometric(per_tile[:, code], k)
        for t, k_t in enumerate(alloc):
            if k_t:
                tile_ranks[t][code] = np.sort(rng.choice(int(per_tile[t, code]), size=int(k_t), replace=False))
    for t, cell in enumerate(cells):
        if tile_ranks[t]:
            jobs.append((cell, str(tiles[cell]), tile_ranks[t]))
    parts = run_tasks(_select_task, jobs, desc="anchor pass 2/2 (selection)", executor=executor)
    anchors = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["lon", "lat", "code", "cell"])
    anchors = anchors.sort_values(["cell", "lat", "lon"], ascending=[True, False, True], kind="stable").reset_index(drop=True)
    summary = {
        "requested": n,
        "sampled": int(len(anchors)),
        "pixels_per_code": {int(c): int(totals[c]) for c in present},
        "anchors_per_code": {int(c): int(k) for c, k in take.items()},
        "unknown_codes": unknown,  # code -> pixels: outside the class table, treated as no data
    }
    return anchors, summary
