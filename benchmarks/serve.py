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

import asyncio
import hashlib
import os
import random
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.common import ROOT, Result, fmt

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
    from affine import Affine

    from nationmap.data.grid import parse_cell
    from nationmap.files import write_json
    from nationmap.products.cog import open_staging, part_path, translate_to_cog
    from nationmap.records import FileEntry, Products, RunManifest

    west, south = min(parse_cell(c).lon for c in CELLS), min(parse_cell(c).lat for c in CELLS)
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
    from nationmap.data.regions import region_slug

    region = root / region_slug(REGION)
    for m, month in enumerate(months):
        first = region / month / "v1"
        _write_run(first, month, ppd, seed=10 * m)
        for n in range(2, versions + 1):
            shutil.copytree(first, region / month / f"v{n}", copy_function=os.link)
        os.symlink(f"v{versions}", region / month / "latest")
    return root


# ---------------------------------------------------------------------------- the benchmark

BASELINE_COMMIT = "5563d57"  # the server the red team measured
SIZES = {
    "tiny": {"ppd": 240, "zooms": (7, 9), "concurrency": (1, 16), "memory_requests": 600, "hostile_s": 2.0},
    "full": {"ppd": 1800, "zooms": (7, 12), "concurrency": (1, 4, 16), "memory_requests": 10_000, "hostile_s": 10.0},
}
HOSTILE = [f"8/{10**9}/1", f"8/{10**10}/1", "1024/1/1", f"9/{10**9 + 7}/3"]  # 0.5-5 s each in the old server


@dataclass
class Drive:
    """One load run: wall time, latency (s) and status of every request."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")

    def errors(self) -> int:
        return sum(n for status, n in self.statuses.items() if status != "200")


async def _drive(urls: list[str], concurrency: int, timeout: float) -> Drive:
    """GET every url, ``concurrency`` at a time (aiohttp, one connection per client)."""
    import aiohttp

    out = Drive()
    pending = iter(urls)

    async def client(session):
        for url in pending:
            t0 = time.perf_counter()
            try:
                async with session.get(url) as answer:
                    await answer.read()
                    status = str(answer.status)
            except (TimeoutError, aiohttp.ClientError) as exc:
                status = type(exc).__name__
            out.latencies.append(time.perf_counter() - t0)
            out.statuses[status] = out.statuses.get(status, 0) + 1

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=timeout)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(concurrency)))
        out.seconds = time.perf_counter() - t0
    return out


def drive(urls: list[str], concurrency: int, timeout: float = 60.0) -> Drive:
    return asyncio.run(_drive(urls, concurrency, timeout))


@dataclass(frozen=True)
class Server:
    """A running ``nationmap serve`` process: its base URL, pid and the map id to ask for."""

    base: str
    pid: int
    map_id: str

    def rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tree: Path, root: Path):
    """``python -m nationmap serve root`` with ``tree`` first on PYTHONPATH, until the block ends."""
    import json

    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    proc = subprocess.Popen([sys.executable, "-m", "nationmap", "serve", str(root), "--port", str(port)], env=env,
                            cwd=tree, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/maps", timeout=5) as answer:
                    maps = json.loads(answer.read())["maps"]
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server of {tree} did not start (exit {proc.poll()})") from None
                time.sleep(0.2)
        shown = next(m for m in maps if m.get("available", True) and m["latest"])
        yield Server(base, proc.pid, shown["id"])
    finally:
        proc.kill()  # the old server may be computing a hostile tile for minutes: no graceful stop
        proc.wait()


def tile_urls(server: Server, zooms: tuple[int, int], seed: int = 0) -> list[str]:
    """Every lulc and confidence tile over the region and a margin (mostly off the products) at
    ``zooms``, shuffled: what viewers browsing the month ask."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    tiles = list(tms.tiles(137.8, 34.8, 140.2, 37.2, zooms=list(range(zooms[0], zooms[1] + 1))))
    urls = [f"{server.base}/tiles/{p}/{t.z}/{t.x}/{t.y}.png?map={server.map_id}" for t in tiles
            for p in ("lulc", "confidence")]
    random.Random(seed).shuffle(urls)
    return urls


def throughput(tree: Path, root: Path, zooms, concurrency: int) -> tuple[Drive, Drive]:
    """(cold, warm) passes over the tile list on a fresh server: each tile once, then again."""
    with serving(tree, root) as server:
        urls = tile_urls(server, zooms)
        return drive(urls, concurrency), drive(urls, concurrency)


def hostile(tree: Path, root: Path, seconds: float) -> Drive:
    """/api/maps asked in a loop while 16 clients ask hostile tiles (2 s client timeout) for
    ``seconds``; returns the /api/maps requests."""
    with serving(tree, root) as server:
        hostile_urls = [f"{server.base}/tiles/lulc/{zxy}.png?map={server.map_id}" for zxy in HOSTILE] * 10_000

        async def run() -> Drive:
            attack = asyncio.ensure_future(_drive(hostile_urls, 16, timeout=2.0))
            await asyncio.sleep(0.5)
            probes = Drive()
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                one = await _drive([f"{server.base}/api/maps"], 1, timeout=60.0)
                probes.latencies += one.latencies
                for status, n in one.statuses.items():
                    probes.statuses[status] = probes.statuses.get(status, 0) + n
            probes.seconds = time.perf_counter() - t0
            attack.cancel()
            return probes

        return asyncio.run(run())


def memory(tree: Path, root: Path, requests: int, seed: int = 1) -> list[tuple[int, float]]:
    """(requests so far, server RSS MiB) every tenth of ``requests`` tile requests drawn at random
    from the tiles at zooms 10..14 over the products (concurrency 8)."""
    import morecantile

    tms = morecantile.tms.get("WebMercatorQuad")
    with serving(tree, root) as server:
        tiles = list(tms.tiles(138.0, 35.0, 140.0, 37.0, zooms=[10, 11, 12, 13, 14]))
        rng = random.Random(seed)
        step = requests // 10
        samples = [(0, server.rss_mib())]
        for done in range(step, requests + 1, step):
            batch = [rng.choice(tiles) for _ in range(step)]
            drive([f"{server.base}/tiles/{rng.choice(('lulc', 'confidence'))}/{t.z}/{t.x}/{t.y}.png?map={server.map_id}"
                   for t in batch], 8)
            samples.append((done, server.rss_mib()))
    return samples


def baseline_tree(workdir: Path, commit: str = BASELINE_COMMIT) -> Path:
    """The ``nationmap`` package of ``commit`` (``git archive``), made once under ``workdir``."""
    tree = workdir / f"serve-baseline-{commit}"
    if not (tree / "nationmap" / "serve" / "app.py").exists():
        tree.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "nationmap"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def cpu_line() -> str:
    """The CPU model (lscpu's 'Model name'), family and model, and whether it has AVX512-BF16 and AMX."""
    info = Path("/proc/cpuinfo").read_text()
    fields = dict(line.split(":", 1) for line in info.splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    flags = set(fields.get("flags", "").split())
    return (f"{fields.get('model name', '?')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}), "
            f"{os.cpu_count()} cores; AVX512-BF16: {'yes' if 'avx512_bf16' in flags else 'no'}, "
            f"AMX: {'yes' if 'amx_tile' in flags else 'no'}")


def _row(measure: str, server: str, concurrency: int, d: Drive) -> dict:
    return {"measure": measure, "server": server, "concurrency": concurrency, "requests": len(d.latencies),
            "req/s": fmt(d.rate), "p50 ms": fmt(1000 * d.percentile(50)), "p99 ms": fmt(1000 * d.percentile(99)),
            "max ms": fmt(1000 * max(d.latencies, default=float("nan"))), "errors": d.errors()}


def _growth_per_1000(samples: list[tuple[int, float]], start: int | None = None) -> float:
    """RSS growth (MiB per 1,000 requests) from sample ``start`` (default: half-way) to the last."""
    (n0, rss0), (n1, rss1) = samples[len(samples) // 2 if start is None else start], samples[-1]
    return (rss1 - rss0) / ((n1 - n0) / 1000)


def run(size: str, workdir: Path, baseline: Path | None = None) -> Result:
    cfg = SIZES[size]
    place = workdir / f"serve-{size}"
    root = place / "products"
    if not (place / "ready").exists():
        shutil.rmtree(place, ignore_errors=True)
        write_products_root(root, ppd=cfg["ppd"], versions=2)
        (place / "ready").touch()
    trees = {f"baseline ({BASELINE_COMMIT})": baseline or baseline_tree(workdir), "this checkout": ROOT}
    res = Result("serve", "Web map: tile throughput, /api/maps under hostile tiles, memory (nationmap serve)")
    data: dict = {"ppd": cfg["ppd"], "throughput": {}, "hostile": {}, "memory": {}}
    for name, tree in trees.items():
        for c in cfg["concurrency"]:
            cold, warm = throughput(tree, root, cfg["zooms"], c)
            res.rows += [_row("tiles, each once", name, c, cold), _row("tiles, again", name, c, warm)]
            data["throughput"][f"{name} c{c}"] = {"cold_rps": cold.rate, "warm_rps": warm.rate,
                                                  "cold_p99_s": cold.percentile(99), "warm_p99_s": warm.percentile(99),
                                                  "errors": cold.errors() + warm.errors()}
        probes = hostile(tree, root, cfg["hostile_s"])
        res.rows.append(_row("/api/maps under 16 hostile clients", name, 1, probes))
        data["hostile"][name] = {"max_s": max(probes.latencies), "requests": len(probes.latencies)}
        data["memory"][name] = memory(tree, root, cfg["memory_requests"])
    base, this = trees
    top = max(cfg["concurrency"])
    t_base, t_this = data["throughput"][f"{base} c{top}"], data["throughput"][f"{this} c{top}"]
    res.ratios = {
        f"tiles_c{top}_each_once_vs_baseline": t_this["cold_rps"] / t_base["cold_rps"],
        f"tiles_c{top}_again_vs_baseline": t_this["warm_rps"] / t_base["warm_rps"],
        f"p99_c{top}_each_once_s": t_this["cold_p99_s"],
        "api_maps_max_s_under_hostile": data["hostile"][this]["max_s"],
        "api_maps_max_s_under_hostile_baseline": data["hostile"][base]["max_s"],
        "rss_mib_per_1000_requests": _growth_per_1000(data["memory"][this]),
        "rss_mib_per_1000_requests_baseline": _growth_per_1000(data["memory"][base]),
    }
    res.data = data
    res.notes = _notes(cfg, data, trees, top) + [verdict(res.ratios, data["memory"][this], top)]
    return res


FLAT_MIB_PER_1000 = 0.25  # RSS growth over the last 40 % of the requests that counts as flat


def verdict(ratios: dict[str, float], rss: list[tuple[int, float]], top: int = 16) -> str:
    """Which of issue 36's targets this run met (memory: flat once the caches are full, i.e. growth
    over the last 40 % of the requests at most ``FLAT_MIB_PER_1000``)."""
    speed, p99 = ratios[f"tiles_c{top}_each_once_vs_baseline"], ratios[f"p99_c{top}_each_once_s"]
    wait = ratios["api_maps_max_s_under_hostile"]
    tail = _growth_per_1000(rss, start=len(rss) - 5)
    marks = [("tiles", speed >= 4 and p99 < 0.5, f"{speed:.2f}x the baseline, p99 {p99:.3f} s"),
             ("/api/maps under hostile tiles", wait <= 1.0, f"at most {wait:.3f} s"),
             ("memory", tail <= FLAT_MIB_PER_1000, f"RSS +{tail:.2f} MiB per 1,000 requests over the last 40 %, "
                                                   f"+{ratios['rss_mib_per_1000_requests']:.2f} over the second half")]
    return "This run: " + "; ".join(f"{what} {'met' if ok else 'NOT met'} ({how})" for what, ok, how in marks) + "."


def _notes(cfg: dict, data: dict, trees: dict, top: int) -> list[str]:
    base, this = trees
    mem = {name: ", ".join(f"{n:,}: {rss:.0f}" for n, rss in data["memory"][name]) for name in trees}
    return [
        f"CPU: {cpu_line()}. The load generator (aiohttp, in the benchmark's process) shares these cores with the server.",
        f"Products: 2 months x 2 versions of a 2 x 2 cell region at {cfg['ppd']} px/deg "
        f"({2 * cfg['ppd']:,} x {2 * cfg['ppd']:,} px national COGs, written by nationmap's COG writer). Tiles: lulc and "
        f"confidence at zooms {cfg['zooms'][0]}..{cfg['zooms'][1]} over the region and a margin, shuffled; "
        "'each once' is a fresh server asked every tile once, 'again' the same list right after (what a second viewer asks).",
        f"Hostile: 16 clients asking tiles {', '.join(HOSTILE)} (2 s client timeout) for {cfg['hostile_s']:g} s while one "
        "client asks /api/maps in a loop; 'max ms' is the slowest /api/maps answer.",
        f"Server RSS (MiB) by requests served, {cfg['memory_requests']:,} tile requests at concurrency 8 over zooms "
        f"10..14: {this}: {mem[this]}; {base}: {mem[base]}.",
        f"Targets (issue 36): tiles at concurrency {top}, each once, >= 4x the baseline with p99 < 0.5 s; /api/maps "
        "never delayed over 1 s; RSS flat over 10,000 requests.",
        f"The baseline is `git archive {BASELINE_COMMIT} nationmap` served with PYTHONPATH (or --baseline-tree).",
    ]


if __name__ == "__main__":
    import argparse
    import json

    from benchmarks.common import WORKDIR

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=tuple(SIZES), default="full")
    ap.add_argument("--workdir", type=Path, default=WORKDIR)
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help=f"a tree holding the baseline's nationmap package (default: {BASELINE_COMMIT} from git)")
    args = ap.parse_args()
    print(json.dumps(run(args.size, args.workdir, args.baseline_tree).to_dict(), default=str))
