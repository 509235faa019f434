"""What every benchmark shares: the machine and versions, timers, peak memory of a child
process, synthetic inputs (scenes, random-weight bundles) and the result record."""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = ("tiny", "full")  # tiny: the test suite's smoke run; full: the figures of RESULTS.md
WORKDIR = ROOT / "benchmarks" / ".work"  # inputs made once and reused


@dataclass
class Result:
    """One benchmark's figures. ``rows`` are table rows (dicts with the same keys); ``ratios``
    the headline ratios (name -> value, measured / reference); ``notes`` free lines."""

    name: str
    title: str
    rows: list[dict] = field(default_factory=list)
    ratios: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    data: dict = field(default_factory=dict)  # machine-readable figures (plan reads them)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def machine() -> dict:
    """CPU, cores, memory, GPU and the versions the figures depend on."""
    import rasterio
    import torch

    from nationmap.devices import cpu_name, probe_bf16

    cpu = cpu_name()
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    versions = {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
                "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__}
    for mod in ("ray", "timm", "rio_cogeo", "dask", "xarray", "rioxarray"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001 - a missing optional module is just not listed
            pass
    from nationmap import __version__

    versions["nationmap"] = __version__
    git = git_commit()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    native = probe_bf16("cpu").native  # whether bf16 autocast is native here: it changes CPU training times
    return {"cpu": cpu, "cpu_bf16": ", ".join(native) if native else "none", "cores": os.cpu_count(),
            "memory_gib": round(mem_gib, 1), "gpu": gpu,
            "torch_threads": torch.get_num_threads(), "platform": platform.platform(), "git": git or None,
            "versions": versions}


def git_commit() -> str | None:
    """The checkout's short commit hash (None outside a git checkout)."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() or None


@contextmanager
def timer(out: dict, key: str):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        out[key] = time.perf_counter() - t0


def best_of(fn, repeat: int = 2) -> float:
    """Fastest wall time of ``repeat`` calls of ``fn`` (seconds): the reference is measured at
    its best so the ratios are not flattered by a slow reference."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB), from the kernel's high-water mark."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(run, doc: str) -> None:
    """The command line of one benchmark module: ``--size``, ``--workdir``; prints its result as JSON
    (what :func:`run_child` reads)."""
    import argparse

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--size", choices=SIZES, default="full")
    ap.add_argument("--workdir", type=Path, default=WORKDIR)
    args = ap.parse_args()
    print(json.dumps(run(args.size, args.workdir).to_dict(), default=str))


def run_child(module: str, *args: str, timeout: float = 4 * 3600) -> dict:
    """Run ``python -m module args`` in a fresh process; it prints one JSON line last."""
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- synthetic inputs

SCENE_PIXEL_M = 25.0


def write_scene(path: Path, size: int, seed: int = 0, heading_deg: float = 10.0, pixel_m: float = SCENE_PIXEL_M,
                origin=(500_000.0, 3_900_000.0), epsg: int = 32654) -> dict:
    """A ``size`` x ``size`` ALOS-2-like HH scene (uint16 DN, 0 = no data), written strip by strip.

    As in a georeferenced L2.1 product, the valid footprint is a swath rotated by
    ``heading_deg`` inside the north-up raster (no data in the corner wedges). Values: a few
    smooth backscatter regions (-25..-5 dB) with gamma speckle. Returns the valid fraction.
    """
    import rasterio
    from affine import Affine
    from rasterio.windows import Window

    from nationmap.data.calibration import db_to_dn

    rng = np.random.default_rng(seed)
    a = math.radians(heading_deg)
    # the swath: the largest rotated square inside the raster, centred
    half = size / (2 * (abs(math.cos(a)) + abs(math.sin(a))))
    c = size / 2
    profile = dict(driver="GTiff", dtype="uint16", count=1, width=size, height=size, nodata=0, tiled=True,
                   blockxsize=512, blockysize=512, crs=f"EPSG:{epsg}",
                   transform=Affine(pixel_m, 0, origin[0], 0, -pixel_m, origin[1] + size * pixel_m))
    path.parent.mkdir(parents=True, exist_ok=True)
    valid_px = 0
    strip = 512
    cols = np.arange(size) + 0.5 - c
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, size, strip):
            n = min(strip, size - r0)
            rows = (np.arange(r0, r0 + n) + 0.5 - c)[:, None]
            along = cols[None, :] * math.sin(a) + rows * math.cos(a)
            across = cols[None, :] * math.cos(a) - rows * math.sin(a)
            inside = (np.abs(along) < half) & (np.abs(across) < half)
            region = (np.floor((cols[None, :] + c) / 700) + np.floor((rows + c) / 900)) % 5
            db = -25.0 + 5.0 * region + rng.gamma(4.0, 0.25, size=(n, size)).astype(np.float32)
            dn = np.where(inside, db_to_dn(db.astype(np.float32)), 0).astype(np.uint16)
            valid_px += int(inside.sum())
            dst.write(dn, 1, window=Window(0, r0, size, n))
    return {"path": str(path), "size": size, "valid_fraction": valid_px / size**2, "pixel_m": pixel_m}


def random_bundles(root: Path, preset: str = "tiny", img_size: int = 256, tasks=("lulc", "water")) -> dict[str, str]:
    """Random-weight bundles of ``preset`` (what inference costs does not depend on the weights)."""
    from nationmap.train.checkpoint import random_bundle

    out = {}
    for seed, task in enumerate(tasks):
        path = root / f"{preset}-{img_size}" / task
        if not (path / "model.json").exists():
            random_bundle(path, task, preset, img_size, seed)
        out[task] = str(path)
    return out


def fmt(value: float, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def write_lulc_tile(directory: Path, cell_name: str, ppd: int, seed: int = 0) -> Path:
    """A JAXA-like LULC tile (uint8 source codes 1..14 in patches of ~1 km, 0 = no data)."""
    import rasterio

    from nationmap.data.grid import parse_cell
    from nationmap.data.lulc import lulc_tile_name

    cell = parse_cell(cell_name)
    rng = np.random.default_rng(seed)
    blob = max(1, ppd // 100)
    coarse = rng.integers(1, 15, size=(ppd // blob + 1, ppd // blob + 1)).astype(np.uint8)
    codes = np.repeat(np.repeat(coarse, blob, 0), blob, 1)[:ppd, :ppd]
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / lulc_tile_name(cell_name)
    with rasterio.open(path, "w", driver="GTiff", dtype="uint8", count=1, width=ppd, height=ppd, crs="EPSG:4326",
                       transform=cell.transform(ppd), nodata=0, tiled=True, compress="deflate") as dst:
        dst.write(codes, 1)
    return path


def run_driver(args: list[str], env: dict, log: Path) -> dict:
    """``python -m nationmap ARGS`` as a child process: wall time, exit code, and peak RSS (MiB) of
    the driver process alone (its kernel high-water mark, sampled until it exits) and with the
    processes it started and waited for (``wait4``)."""
    t0 = time.perf_counter()
    hwm = 0.0
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "nationmap", *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**env, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        status_file = Path(f"/proc/{proc.pid}/status")
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                line = next(x for x in status_file.read_text().splitlines() if x.startswith("VmHWM:"))
                hwm = max(hwm, int(line.split()[1]) / 1024)
            except (OSError, StopIteration):
                pass
            time.sleep(0.2)
    rc = os.waitstatus_to_exitcode(status)
    if rc not in (0, 3):
        raise RuntimeError(f"nationmap {' '.join(args)} exited {rc}:\n{log.read_text()[-3000:]}")
    return {"seconds": time.perf_counter() - t0, "rc": rc, "peak_rss_mib": hwm,
            "peak_rss_with_children_mib": usage.ru_maxrss / 1024}


def synth_world(root: Path, region: str, months: tuple[str, ...], lulc_ppd: int, scene_m: float) -> dict:
    """Synthesise (seed 0) and catalogue the region's months under ``root`` once (``raw/``,
    ``catalog.parquet``; reused by later runs); returns the seconds each step took this time."""
    from nationmap.data.catalog import build_catalog
    from nationmap.data.months import parse_months
    from nationmap.data.regions import resolve_region
    from nationmap.data.synth.generate import SynthConfig, synthesize

    raw, catalog = root / "raw", root / "catalog.parquet"
    out = {}
    if not (raw / "synth.json").exists():
        cfg = SynthConfig.for_region(resolve_region(region), parse_months(",".join(months)), seed=0,
                                     lulc_pixels_per_degree=lulc_ppd, scene_pixel_m=scene_m)
        import ray

        ours = not ray.is_initialized()
        t0 = time.perf_counter()
        synthesize(raw, cfg, executor="ray")
        out["synth_s"] = time.perf_counter() - t0
        if ours:
            ray.shutdown()  # what runs next gets the cores
    if not catalog.exists():
        t0 = time.perf_counter()
        build_catalog(raw / "alos2", catalog, executor="serial")
        out["catalog_s"] = time.perf_counter() - t0
    return out


def write_month(root: Path, cell_name: str, side: int, pixel_m: float, ppd: int, month: str = "2022-09") -> Path:
    """A month of four overlapping ALOS-2-like scenes (``side`` px, ``pixel_m``) over one cell, its
    LULC tile at ``ppd`` px/deg and its catalog; returns the catalog path (made once)."""
    import datetime as dt

    from pyproj import Transformer

    from nationmap.data.alos2 import format_alos2_name
    from nationmap.data.catalog import build_catalog
    from nationmap.data.grid import parse_cell

    catalog = root / "catalog.parquet"
    if catalog.exists():
        return catalog
    cell = parse_cell(cell_name)
    write_lulc_tile(root / "lulc", cell_name, ppd)
    to_utm = Transformer.from_crs(4326, 32654, always_xy=True)
    year, mon = map(int, month.split("-"))
    for i, (dlon, dlat) in enumerate(((0.27, 0.27), (0.73, 0.27), (0.27, 0.73), (0.73, 0.73))):
        e, n = to_utm.transform(cell.lon + dlon, cell.lat + dlat)
        half = side * pixel_m / 2
        name = format_alos2_name("HH", 40000 + 15 * i, 700 + 10 * i, dt.date(year, mon, 3 + 7 * i))
        path = root / "alos2" / month / name.split("-", 2)[2].rsplit(".", 1)[0] / name
        write_scene(path, side, seed=i, heading_deg=-10.0 + 7 * i, pixel_m=pixel_m, origin=(e - half, n - half))
    build_catalog(root / "alos2", catalog, executor="serial")
    return catalog
