"""Inference memory: peak resident memory of the scene stage against scene area.

Each scene size is predicted in a fresh process (random-weight tiny-preset LULC + water models at
256 x 256, the pipeline's batch size) and the kernel's high-water mark of that process
(``VmHWM``) is read at the end. The reference, in the same run, is a process that loads the
same models and runs one batch: the memory any inference needs. Scenes are square uint16
rasters whose valid swath is rotated inside them, as in georeferenced ALOS-2 products.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from benchmarks.common import Result, fmt, main, peak_rss_mib, random_bundles, run_child, write_scene

SIZES = {"tiny": (256, 512, 1024), "full": (2048, 8192, 16384)}
BATCH = 16


def _child(args: list[str]) -> None:
    """``--child MODE SCENE OUT LULC WATER``: MODE ``scene`` predicts SCENE, ``models`` runs one batch."""
    import numpy as np
    import torch

    from nationmap.infer.predict import load_scene_models
    from nationmap.infer.scene import predict_scene
    from nationmap.infer.windows import WindowSettings

    mode, scene, out, lulc, water = args
    models = load_scene_models({"lulc": lulc, "water": water})
    t0 = time.perf_counter()
    record = {}
    if mode == "models":
        models.probabilities(np.zeros((BATCH, 256, 256), np.float32))
    else:
        r = predict_scene(scene, out, models, WindowSettings(size=256, overlap=64, batch_size=BATCH))
        record = {"windows": r.windows, "height": r.height, "width": r.width}
        Path(out).unlink()
    print(json.dumps({**record, "peak_rss_mib": peak_rss_mib(), "seconds": time.perf_counter() - t0,
                      "threads": torch.get_num_threads()}))


def run(size: str, workdir: Path) -> Result:
    workdir.mkdir(parents=True, exist_ok=True)
    bundles = random_bundles(workdir / "bundles")
    res = Result("infer_memory", "Inference memory vs scene area (scene stage, one process per size)")
    base = run_child("benchmarks.infer_memory", "--child", "models", "-", "-", bundles["lulc"], bundles["water"])
    res.rows.append({"scene (px)": "models + one batch", "area (km2)": "-", "windows": "-", "peak RSS (MiB)": fmt(base["peak_rss_mib"]),
                     "vs models alone": "1.00", "seconds": fmt(base["seconds"])})
    peaks = {}
    for side in SIZES[size]:
        scene = workdir / "scenes" / f"scene-{side}.tif"
        if not scene.exists():
            write_scene(scene, side, seed=side)
        r = run_child("benchmarks.infer_memory", "--child", "scene", str(scene), str(workdir / f"pred-{side}.tif"),
                      bundles["lulc"], bundles["water"])
        peaks[side] = r["peak_rss_mib"]
        km2 = side * side * 25.0**2 / 1e6
        res.rows.append({"scene (px)": f"{side:,} x {side:,}", "area (km2)": fmt(km2), "windows": fmt(r["windows"]),
                         "peak RSS (MiB)": fmt(r["peak_rss_mib"]), "vs models alone": f"{r['peak_rss_mib'] / base['peak_rss_mib']:.2f}",
                         "seconds": fmt(r["seconds"])})
        scene.unlink()  # GiB-sized at 16k: do not keep
    sides = sorted(peaks)
    res.ratios = {"largest_vs_smallest_scene": peaks[sides[-1]] / peaks[sides[0]],
                  "largest_scene_vs_models_alone": peaks[sides[-1]] / base["peak_rss_mib"],
                  "area_ratio": (sides[-1] / sides[0]) ** 2}
    res.data = {"models_mib": base["peak_rss_mib"], "peaks_mib": {str(k): v for k, v in peaks.items()}, "batch": BATCH}
    res.notes = [f"Scene area grows x{res.ratios['area_ratio']:.0f} from the smallest to the largest scene; peak memory "
                 f"x{res.ratios['largest_vs_smallest_scene']:.2f}."]
    return res


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _child(sys.argv[2:])
        sys.exit(0)
    main(run, __doc__)
