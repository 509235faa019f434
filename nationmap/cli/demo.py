"""``nationmap demo``: the mission on the embedded default (data part until inference exists)."""

from __future__ import annotations

import time
from pathlib import Path

from nationmap.cli.common import console, start_ray
from nationmap.data.catalog import build_catalog
from nationmap.data.months import parse_months
from nationmap.data.prepare import PrepareConfig, prepare_dataset
from nationmap.data.regions import resolve_region
from nationmap.data.synth.generate import SynthConfig, synthesize

DEMO_MONTHS = "2022-09,2022-10,2022-11"


def run_demo(out: str, seed: int, executor: str, address: str | None) -> None:
    root = Path(out)
    raw, catalog, dataset = root / "raw", root / "catalog.parquet", root / "dataset"
    region = resolve_region("demo")
    start_ray(executor, address)
    t0 = time.time()
    console.rule("1/3 synthetic ALOS-2 world")
    summary = synthesize(raw, SynthConfig.for_region(region, parse_months(DEMO_MONTHS), seed=seed), executor=executor)
    console.rule("2/3 catalog")
    report = build_catalog(raw, catalog, executor=executor)
    console.rule("3/3 dataset preparation")
    cfg = PrepareConfig(pretrain_months=("2022-10", "2022-11"), finetune_months=("2022-09",), n_anchors=200_000,
                        seed=seed, region="demo")
    prep = prepare_dataset(catalog, raw / "lulc", dataset, cfg, region, overwrite=True, executor=executor)
    p = prep["patches"]
    st = summary["statistics"]
    console.rule("done")
    console.print(f"synthetic world: {len(summary['tiles'])} LULC tiles, {st['scenes']} scenes in {raw} "
                  f"(HH {st['hh_db_mean']:.2f} +- {st['hh_db_std']:.2f} dB)")
    console.print(f"catalog:         {catalog} ({report.total} acquisitions)")
    console.print(f"dataset:         {dataset} ({p['pretrain']} pretraining patches; "
                  f"{p['train']}/{p['val']}/{p['test']} train/val/test pairs)")
    console.print(f"total {time.time() - t0:.0f} s. Train on it: nationmap train pretrain|lulc|water --spec jobs/cpu-demo/TASK.toml "
                  f"--data {out}/dataset (README, Training); inference arrives with its issue.")
