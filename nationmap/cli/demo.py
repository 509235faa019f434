"""``nationmap demo``: the whole mission on the embedded default, tiny preset, CPU.

synthetic world -> catalog -> prepared dataset -> pretraining -> LULC and water finetuning ->
test-split evaluation -> inference of the finetuning month over the demo region -> products,
then the products' agreement with the synthetic truth, per class.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from nationmap.cli.common import EXIT_FAILED, EXIT_OK, EXIT_PARTIAL, console, start_ray
from nationmap.data.catalog import build_catalog
from nationmap.data.months import parse_months
from nationmap.data.prepare import PrepareConfig, prepare_dataset
from nationmap.data.regions import resolve_region
from nationmap.data.synth.generate import SynthConfig, synthesize

DEMO_MONTHS = "2022-09,2022-10,2022-11"
DEMO_MAP_MONTH = "2022-09"
DEMO_PIXELS_PER_DEGREE = 1200  # the synthetic LULC tiles' grid, so products line up with the truth
STAGES = 7


def _stage(i: int, title: str) -> None:
    console.rule(f"{i}/{STAGES} {title}")


def _train(task: str, dataset: Path, runs: Path, init: Path | None) -> Path:
    from nationmap.train.config import resolve_config
    from nationmap.train.run import run_training

    shutil.rmtree(runs / task, ignore_errors=True)  # the demo owns its output directory: rerun from scratch
    overrides = {"data": str(dataset), "out": str(runs), "name": task}
    if init is not None:
        overrides["init"] = str(init)
    result = run_training(resolve_config(task, f"cpu-demo/{task}", overrides))
    s = result.summary
    best = s.get("best") or {}
    console.print(f"{task}: {s['status']} after {s['epochs']} epochs in {s['seconds']} s; "
                  f"best {best.get('metric')} {best.get('value', float('nan')):.4f}")
    return result.run_dir


def _data_stages(raw: Path, catalog: Path, dataset: Path, region, seed: int, executor: str) -> tuple[list[str], int]:
    """Stages 1-3 (world, catalog, dataset): their summary lines and the scenes that failed."""
    _stage(1, "synthetic ALOS-2 world")
    summary = synthesize(raw, SynthConfig.for_region(region, parse_months(DEMO_MONTHS), seed=seed), executor=executor)
    _stage(2, "catalog")
    report = build_catalog(raw, catalog, executor=executor)
    _stage(3, "dataset preparation")
    cfg = PrepareConfig(pretrain_months=("2022-10", "2022-11"), finetune_months=("2022-09",), n_anchors=200_000,
                        seed=seed, region="demo")
    prep = prepare_dataset(catalog, raw / "lulc", dataset, cfg, region, overwrite=True, executor=executor)
    p = prep["patches"]
    st = summary["statistics"]
    lines = [f"synthetic world: {len(summary['tiles'])} LULC tiles, {st['scenes']} scenes in {raw} "
             f"(HH {st['hh_db_mean']:.2f} +- {st['hh_db_std']:.2f} dB)",
             f"catalog:         {catalog} ({report.total} acquisitions)",
             f"dataset:         {dataset} ({p['pretrain']} pretraining patches; "
             f"{p['train']}/{p['val']}/{p['test']} train/val/test pairs)"]
    return lines, len(report.failed) + len(prep["failed"])


def _model_stages(dataset: Path, runs: Path, bundles: Path) -> dict[str, dict]:
    """Stages 4-5: pretraining, LULC and water finetuning, bundles and their test-split scores."""
    from nationmap.train.checkpoint import find_checkpoint, write_bundle
    from nationmap.train.evaluate import evaluate

    _stage(4, "pretraining (SAR-W-MixMAE, tiny preset)")
    pretrain = _train("pretrain", dataset, runs, None)
    _stage(5, "finetuning LULC and water")
    test = {}
    for task in ("lulc", "water"):
        run = _train(task, dataset, runs, pretrain)
        write_bundle(bundles / task, find_checkpoint(run, "best"))
        test[task] = evaluate(bundles / task, dataset, "test", bundles / task / "eval-test", task=task)
    return test


def run_demo(out: str, seed: int, executor: str, address: str | None, data_only: bool = False) -> int:
    """The demo; returns its exit code (3 when scenes failed on the way, 1 when inference failed)."""
    root = Path(out)
    raw, catalog, dataset = root / "raw", root / "catalog.parquet", root / "dataset"
    region = resolve_region("demo")
    if executor != "ray" and not data_only:  # refused before minutes of data stages
        from nationmap.errors import InputError

        raise InputError("training runs on Ray Train: the full demo needs --executor ray (or use --data-only)")
    start_ray(executor, address)
    t0 = time.time()
    lines, failed = _data_stages(raw, catalog, dataset, region, seed, executor)
    times = {"data": time.time() - t0}
    if data_only:
        console.rule("done")
        console.print("\n".join(lines), highlight=False, soft_wrap=True)
        console.print(f"total {time.time() - t0:.0f} s (data only)")
        return EXIT_PARTIAL if failed else EXIT_OK
    from nationmap.infer.config import InferConfig
    from nationmap.infer.pipeline import run_inference, summarize
    from nationmap.products.agreement import map_agreement

    runs, bundles = root / "runs", root / "models"
    t = time.time()
    test = _model_stages(dataset, runs, bundles)
    times["training"] = time.time() - t
    t = time.time()
    _stage(6, f"inference: {region.name}, {DEMO_MAP_MONTH}")
    infer_cfg = InferConfig(region="demo", month=DEMO_MAP_MONTH, catalog=str(catalog), lulc_model=str(bundles / "lulc"),
                            water_model=str(bundles / "water"), out=str(root / "products"), lulc_dir=str(raw / "lulc"),
                            pixels_per_degree=DEMO_PIXELS_PER_DEGREE, batch_size=8, executor=executor, gpus_per_actor=0.0)
    manifest = run_inference(infer_cfg, log=console.print)
    console.print(summarize(manifest), highlight=False, soft_wrap=True)
    times["inference"] = time.time() - t
    _stage(7, "agreement with the synthetic truth")
    run_dir = Path(manifest.run_dir)
    agreement = map_agreement(run_dir, raw / "lulc")
    console.print(agreement["table"], highlight=False, soft_wrap=True)
    lt, wt = test["lulc"], test["water"]
    la, wa = agreement["lulc"], agreement["water"]
    console.rule("done")
    products = manifest.products
    lines += [f"models:          {bundles}/lulc, {bundles}/water (test split: LULC mIoU {lt['miou']:.3f}, "
              f"water IoU {100 * wt['iou']:.1f} %; tables in MODEL/eval-test/table.md)",
              f"products:        {run_dir}/cells/, mosaics in {run_dir}/mosaic/, STAC {run_dir}/{products.stac}",
              f"quicklooks:      {run_dir}/quicklooks/",
              f"agreement:       {run_dir}/agreement.md (map vs synthetic truth: LULC mIoU {la['miou']:.3f}, "
              f"water IoU {100 * wa['iou']:.1f} %)",
              f"manifest:        {run_dir}/manifest.json"]
    console.print("\n".join(lines), highlight=False, soft_wrap=True)
    console.print("total {:.0f} s (data {:.0f} s, training {:.0f} s, inference {:.0f} s)".format(
        time.time() - t0, times["data"], times["training"], times["inference"]))
    if manifest.status != "ok":
        return EXIT_PARTIAL if manifest.status == "partial" else EXIT_FAILED
    return EXIT_PARTIAL if failed else EXIT_OK
