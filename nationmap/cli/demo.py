"""``nationmap demo``: the whole mission on the embedded default, tiny preset, CPU, judged on
land the models never saw.

synthetic world (the demo region with three months; the held-out region, four cells further
east, with the map month) -> catalog -> prepared dataset of the demo region -> pretraining ->
LULC and water finetuning -> the per-pixel baselines and the test-split evaluation -> inference
of the map month over the held-out region with the models and with the baselines -> the maps'
agreement with the synthetic truth there: model, per-pixel baseline and majority class on the
same pixels, with per-class IoU, boundary F-score and thin-water recall.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from nationmap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, console, start_ray
from nationmap.data.catalog import build_catalog
from nationmap.data.months import parse_months
from nationmap.data.prepare import PrepareConfig, prepare_dataset
from nationmap.data.regions import resolve_region
from nationmap.data.synth.generate import SynthConfig, synthesize
from nationmap.logs import capture

if TYPE_CHECKING:  # records only; their modules import torch
    from nationmap.metrics import MethodScores
    from nationmap.products.agreement import Agreement

DEMO_MONTHS = "2022-09,2022-10,2022-11"
DEMO_MAP_MONTH = "2022-09"
DEMO_PIXELS_PER_DEGREE = 1200  # the synthetic LULC tiles' grid, so products line up with the truth
BASELINE_PIXELS = 200_000  # training pixels of the per-pixel baselines
STAGES = 8
EXIT_INTERRUPTED = 130  # as a shell reports a command stopped by SIGINT
STATE_FORMAT = "nationmap-demo/1"
ASSESS_POINTS = 600  # the held-out map's accuracy sample (Olofsson et al. 2014: 50 at least per class)
ASSESS_ALLOCATION = "min-per-class=50"


class DemoState:
    """The steps a demo output directory holds finished (``OUT/demo.json``): a rerun with the
    same seed and nationmap version keeps them and goes on from the first one not finished; a
    training stopped half-way resumes from its last epoch checkpoint."""

    def __init__(self, root: Path, seed: int):
        from nationmap import __version__
        from nationmap.files import read_json

        self.path, self.stage = root / "demo.json", ""
        self.identity = {"format": STATE_FORMAT, "seed": seed, "nationmap": __version__}
        old = read_json(self.path) if self.path.is_file() else None
        same = isinstance(old, dict) and all(old.get(k) == v for k, v in self.identity.items())
        done, started = (old.get("done"), old.get("started")) if same else (None, None)
        self.done: dict[str, int] = done if isinstance(done, dict) else {}  # step -> units it left failed
        self.begun: list[str] = started if isinstance(started, list) else []  # steps started by this identity

    def finished(self, step: str) -> bool:
        return step in self.done

    def started(self, step: str) -> bool:
        """Whether ``step`` was started by a demo of this seed and version (its outputs are its own)."""
        return step in self.begun

    def mark(self, step: str, failed: int = 0) -> None:
        self.done[step] = int(failed)
        self._write()

    def start(self, step: str) -> None:
        if step not in self.begun:
            self.begun.append(step)
            self._write()

    def _write(self) -> None:
        from nationmap.files import write_json

        write_json(self.path, {**self.identity, "done": self.done, "started": self.begun})

    def enter(self, i: int, title: str) -> None:
        self.stage = f"{i}/{STAGES} {title}"
        console.rule(self.stage)


def _train(task: str, dataset: Path, runs: Path, init: Path | None, state: DemoState) -> Path:
    from nationmap.errors import InputError
    from nationmap.train.config import resolve_config
    from nationmap.train.run import load_run_config, run_training

    run_dir = runs / task
    if state.finished(task):
        console.print(f"{task}: finished in an earlier run of the demo, kept ({run_dir})")
        return run_dir
    # a run this demo (seed, version) stopped after an epoch checkpoint continues from it;
    # anything else (another seed's run, no checkpoint, a config that no longer reads) starts again
    cfg, resume = None, state.started(task) and (run_dir / "checkpoint_manager_snapshot.json").is_file()
    if resume:
        try:
            cfg = load_run_config(run_dir)
        except InputError:
            resume = False
    if resume:
        console.print(f"{task}: resuming the stopped run {run_dir} from its last epoch checkpoint")
    else:
        shutil.rmtree(run_dir, ignore_errors=True)
        overrides = {"data": str(dataset), "out": str(runs), "name": task}
        if init is not None:
            overrides["init"] = str(init)
        cfg = resolve_config(task, f"cpu-demo/{task}", overrides)
        state.start(task)
    result = run_training(cfg, resume=resume, log=console.print)
    state.mark(task)
    s = result.summary
    best = s.get("best") or {}
    console.print(f"{task}: {s['status']} after {s['epochs']} epochs in {s['seconds']} s; "
                  f"best {best.get('metric')} {best.get('value', float('nan')):.4f}")
    return result.run_dir


def _world(root: Path, seed: int, executor: str, state: DemoState) -> tuple[list[str], int]:
    """Stages 1-2: the demo region's and the held-out region's worlds and catalogs."""
    from nationmap.files import read_json

    state.enter(1, "synthetic ALOS-2 world: the demo region and the held-out region")
    region, heldout = resolve_region("demo"), resolve_region("demo-heldout")
    if state.finished("world"):
        console.print(f"finished in an earlier run of the demo, kept ({root / 'raw'}, {root / 'heldout' / 'raw'})")
        summary = read_json(root / "raw" / "synth.json")
    else:
        summary = synthesize(root / "raw", SynthConfig.for_region(region, parse_months(DEMO_MONTHS), seed=seed),
                             executor=executor)
        synthesize(root / "heldout" / "raw", SynthConfig.for_region(heldout, parse_months(DEMO_MAP_MONTH),
                                                                    seed=seed), executor=executor)
        state.mark("world")
    state.enter(2, "catalogs")  # incremental: a rerun only checks what is catalogued
    report = build_catalog(root / "raw", root / "catalog.parquet", executor=executor)
    held = build_catalog(root / "heldout" / "raw", root / "heldout" / "catalog.parquet", executor=executor)
    st = summary["statistics"]
    lines = [f"synthetic world: {len(summary['tiles'])} LULC tiles, {st['scenes']} scenes in {root / 'raw'} "
             f"(HH {st['hh_db_mean']:.2f} +- {st['hh_db_std']:.2f} dB); held-out region "
             f"{', '.join(heldout.cell_names)}: {held.total} scenes of {DEMO_MAP_MONTH} in {root / 'heldout'}",
             f"catalogs:        {root / 'catalog.parquet'} ({report.total} acquisitions), "
             f"{root / 'heldout' / 'catalog.parquet'} ({held.total})"]
    return lines, len(report.failed) + len(held.failed)


def _dataset(root: Path, seed: int, executor: str, state: DemoState) -> tuple[str, int]:
    """Stage 3: the demo region's prepared dataset (the held-out region is never prepared)."""
    from nationmap.data.dataset import PreparedDataset

    state.enter(3, "dataset preparation (demo region only)")
    if state.finished("dataset"):
        console.print(f"finished in an earlier run of the demo, kept ({root / 'dataset'})")
        p, failed = PreparedDataset(root / "dataset").meta["patches"], state.done["dataset"]
    else:
        cfg = PrepareConfig(pretrain_months=("2022-10", "2022-11"), finetune_months=("2022-09",), n_anchors=200_000,
                            seed=seed, region="demo")
        prep = prepare_dataset(root / "catalog.parquet", root / "raw" / "lulc", root / "dataset", cfg,
                               resolve_region("demo"), overwrite=True, executor=executor)
        p, failed = prep["patches"], len(prep["failed"])
        state.mark("dataset", failed)
    return (f"dataset:         {root / 'dataset'} ({p['pretrain']} pretraining patches; "
            f"{p['train']}/{p['val']}/{p['test']} train/val/test pairs)", failed)


def _models(root: Path, state: DemoState) -> dict[str, dict]:
    """Stages 4-6: pretraining, finetuning, the per-pixel baselines, test-split scores of both."""
    from nationmap.baseline.bundle import fit_baseline
    from nationmap.train.checkpoint import find_checkpoint, write_bundle
    from nationmap.train.evaluate import evaluate

    dataset, runs, bundles = root / "dataset", root / "runs", root / "models"
    state.enter(4, "pretraining (SAR-W-MixMAE, tiny preset)")
    pretrain = _train("pretrain", dataset, runs, None, state)
    state.enter(5, "finetuning LULC and water")
    for task in ("lulc", "water"):
        write_bundle(bundles / task, find_checkpoint(_train(task, dataset, runs, pretrain, state), "best"))
    state.enter(6, "per-pixel baselines (gradient-boosted trees) and the test split")
    test = {}
    for task in ("lulc", "water"):
        if not state.finished(f"baseline-{task}"):
            fit_baseline(dataset, task, bundles / f"baseline-{task}", max_pixels=BASELINE_PIXELS, log=console.print)
            state.mark(f"baseline-{task}")
        test[task] = evaluate(bundles / task, dataset, "test", bundles / task / "eval-test", task=task,
                              baseline=bundles / f"baseline-{task}")
    return test


def _infer(root: Path, name: str, lulc: Path, water: Path | None, executor: str, probabilities: bool = False,
           assessment: Path | None = None):
    from nationmap.infer.config import InferConfig
    from nationmap.infer.pipeline import run_inference, summarize

    cfg = InferConfig(region="demo-heldout", month=DEMO_MAP_MONTH, catalog=str(root / "heldout" / "catalog.parquet"),
                      lulc_model=str(lulc), water_model=str(water or ""), out=str(root / name),
                      lulc_dir=str(root / "heldout" / "raw" / "lulc"), pixels_per_degree=DEMO_PIXELS_PER_DEGREE,
                      executor=executor, probabilities=probabilities,
                      assessment=str(assessment or ""))  # devices and batch size: auto
    manifest = run_inference(cfg, log=console.print)
    console.print(summarize(manifest), highlight=False, soft_wrap=True)
    return manifest


def _headline(m: "MethodScores") -> str:
    """'0.512 (boundary F 0.61, thin water 0.78)' of one method's scores."""
    return f"{m.headline:.3f} (boundary F {m.boundary_f or 0:.2f}, thin water {m.thin_water_recall or 0:.2f})"


def _summary(root: Path, test: dict, agreement: "Agreement", manifest) -> list[str]:
    run_dir = Path(manifest.run_dir)
    lt, wt = test["lulc"].report, test["water"].report
    la, wa = agreement.products["lulc"].report, agreement.products["water"].report
    return [
        f"models:          {root}/models/lulc, {root}/models/water; per-pixel baselines in {root}/models/baseline-*",
        f"test split:      LULC mIoU {lt.model.headline:.3f} (baseline {lt.baseline.headline:.3f}), water IoU "
        f"{100 * wt.model.headline:.1f} % (baseline {100 * wt.baseline.headline:.1f} %); patches of the training "
        "scenes, tables in MODEL/eval-test/table.md",
        f"held-out maps:   {run_dir}/ (mosaics, quicklooks, STAC {manifest.products.stac})",
        f"held-out agreement with the synthetic truth ({', '.join(agreement.cells)}, never trained on; "
        f"{run_dir}/agreement.md):",
        f"  LULC mIoU      nationmap {_headline(la.model)}",
        f"                 per-pixel baseline {_headline(la.baseline)}",
        f"                 {la.majority.name} {la.majority.headline:.3f}",
        f"  water IoU      nationmap {_headline(wa.model)}",
        f"                 {wa.majority.name} {wa.majority.headline:.3f} (the baseline maps LULC only here: "
        "its Water class is in the LULC rows)",
    ]


def _assessment(root: Path, seed: int, manifest, executor: str) -> list[str]:
    """The accuracy assessment of the held-out LULC map, published with it: a stratified sample of
    the map (redrawn only when the map changed), labelled from the synthetic truth, then the
    products run again with it (only the national tables and STAC are redone): accuracy.json and
    .md and the estimated areas with 95 % intervals join the month's tables. The summary lines."""
    from nationmap.assess.design import map_layer
    from nationmap.assess.protocol import design_sample, fill_reference
    from nationmap.assess.report import AccuracyReport, append_summary, run_table_key
    from nationmap.assess.samples import design_path, read_design

    run_dir = Path(manifest.run_dir)
    stem = root / "assessment" / f"heldout-lulc-{DEMO_MAP_MONTH}"
    csv = stem.with_name(stem.name + ".csv")
    if csv.is_file() and read_design(csv).map_files != map_layer(run_dir).checksums:  # the demo's own, for another map
        for old in (csv, stem.with_name(stem.name + ".gpkg"), design_path(csv)):
            old.unlink(missing_ok=True)
    if not csv.is_file():
        design_sample(run_dir, stem, n=ASSESS_POINTS, allocation=ASSESS_ALLOCATION, seed=seed)
    fill_reference(csv, root / "heldout" / "raw" / "lulc")
    models = root / "models"
    manifest = _infer(root, "products", models / "lulc", models / "water", executor, probabilities=True, assessment=csv)
    report = AccuracyReport.read(run_dir / manifest.products.tables[run_table_key("lulc")].path)
    append_summary(run_dir / "agreement.md", report)
    oa = report.overall
    lines = [f"held-out accuracy and area from a stratified sample ({report.points} points labelled from the truth, "
             f"{ASSESS_ALLOCATION}; 95 % intervals; {run_dir}/tables/*_lulc_accuracy.md):",
             "  overall accuracy " + ("n/a" if oa.estimate is None else f"{oa.estimate:.3f} +- {oa.ci95:.3f}")]
    for c in report.classes:
        if (c.mapped_km2 or 0) > 0 or (c.area_km2.estimate or 0) > 0:
            lines.append(f"  {c.name:<14} map {c.mapped_km2 or 0:9.1f} km2   estimated {c.area_km2.estimate:9.1f} "
                         f"+- {c.area_km2.ci95:7.1f} km2")
    if report.points_outside:  # mapped where the truth has no class (the open sea): in no class's estimate
        lines.append(f"  {'no reference':<14} {report.points_outside} points (open sea)     estimated "
                     f"{report.outside_km2.estimate:9.1f} +- {report.outside_km2.ci95:7.1f} km2")
    return lines


def run_demo(out: str, seed: int, executor: str, address: str | None, data_only: bool = False) -> int:
    """The demo; returns its exit code (3 when scenes failed on the way, 1 when inference failed)."""
    from nationmap.errors import InputError

    root = Path(out)
    if executor != "ray" and not data_only:  # refused before minutes of data stages
        raise InputError("training runs on Ray Train: the full demo needs --executor ray (or use --data-only)")
    root.mkdir(parents=True, exist_ok=True)
    state = DemoState(root, seed)
    try:
        with capture(root / "logs"):  # Ray's own output of the data stages; each run keeps its own
            start_ray(executor, address)
            return _run_demo(root, seed, executor, data_only, state)
    except KeyboardInterrupt:  # Ctrl-C: where it stopped, and how to go on (one line)
        import shlex

        from rich.text import Text

        from nationmap.cli.common import err_console

        rerun = "nationmap demo" + (f" --out {shlex.quote(out)}" if out != "demo-out" else "") + (
            f" --seed {seed}" if seed else "") + (" --data-only" if data_only else "")
        kept = (f"the finished steps are kept in {root}: `{rerun}` resumes from there" if state.done
                else f"no step had finished: `{rerun}` starts again")
        err_console.print(Text(f"interrupted in stage {state.stage or '0/8 start-up'}; {kept}"), highlight=False,
                          soft_wrap=True)
        return EXIT_INTERRUPTED


def _run_demo(root: Path, seed: int, executor: str, data_only: bool, state: DemoState) -> int:
    t0 = time.time()
    lines, failed = _world(root, seed, executor, state)
    line, failed_prep = _dataset(root, seed, executor, state)
    lines.append(line)
    failed += failed_prep
    times = {"data": time.time() - t0}
    if data_only:
        console.rule("done")
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
        console.print(f"total {time.time() - t0:.0f} s (data only)")
        return EXIT_PARTIAL if failed else EXIT_OK
    from nationmap.products.agreement import map_agreement

    t = time.time()
    test = _models(root, state)
    times["training"] = time.time() - t
    t = time.time()
    state.enter(7, f"inference of {DEMO_MAP_MONTH} over the held-out region: models, then baselines")
    models = root / "models"
    manifest = _infer(root, "products", models / "lulc", models / "water", executor, probabilities=True)
    # the baseline's LULC map only, in this process: its trees cost about 10 us a pixel, the
    # water layer would double that, and its Water class already gives the thin-water recall
    base = _infer(root, "baseline-products", models / "baseline-lulc", None, "serial")
    times["inference"] = time.time() - t
    state.enter(8, "held-out agreement with the synthetic truth, and accuracy from a sample")
    agreement = map_agreement(manifest.run_dir, root / "heldout" / "raw" / "lulc", baseline_run=base.run_dir)
    console.print(agreement.table, highlight=False, soft_wrap=True)
    assessment = _assessment(root, seed, manifest, executor)
    console.rule("done")
    lines += _summary(root, test, agreement, manifest) + assessment
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    console.print("total {:.0f} s (data {:.0f} s, training and baselines {:.0f} s, inference {:.0f} s)".format(
        time.time() - t0, times["data"], times["training"], times["inference"]))
    status = {manifest.status, base.status}
    if status != {"ok"}:
        return EXIT_FAILED if "failed" in status else EXIT_PARTIAL
    return EXIT_PARTIAL if failed else EXIT_OK
