"""The paper's Table I: five LULC finetuning runs toggling pretraining, high-res features,
refine-up and alpha-scale, and a sixth with nationmap's image guide on top (not in the paper;
:class:`nationmap.models.upernet.ImageGuide`), each evaluated on a split (by default the validation split; with
``eval_data``, a dataset of held-out land) with mIoU, mAcc, the boundary F-score and the
thin-water recall, beside the per-pixel baseline fitted on the same training split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nationmap.errors import InputError
from nationmap.files import atomic_file, read_json, safe_child
from nationmap.metrics import MethodReport, MethodScores
from nationmap.train.checkpoint import find_checkpoint, write_bundle
from nationmap.train.config import TrainConfig
from nationmap.train.evaluate import evaluate
from nationmap.train.run import absolute_inputs, load_run_config, run_training


@dataclass(frozen=True)
class AblationRow:
    pretraining: bool
    highres: bool
    refine_up: bool
    alpha_scale: bool
    guide: bool = False

    @property
    def name(self) -> str:
        flags = zip(("pre", "hr", "ru", "as"), (self.pretraining, self.highres, self.refine_up, self.alpha_scale))
        return "ablate-" + "-".join(f"{k}{int(v)}" for k, v in flags) + ("-guide" if self.guide else "")

    def config(self, base: TrainConfig, init: str) -> TrainConfig:
        return base.replace(
            name=self.name, highres=self.highres, refine_up=self.refine_up, guide=self.guide,
            alpha_scale=base.alpha_scale if self.alpha_scale else 1.0,
            init=init if self.pretraining else "", no_pretrain=not self.pretraining)


# The rows of Table I, in the paper's order, then the paper's model with the image guide.
TABLE_I = (
    AblationRow(True, False, False, False),
    AblationRow(True, True, False, False),
    AblationRow(True, True, True, False),
    AblationRow(False, True, True, True),
    AblationRow(True, True, True, True),
    AblationRow(True, True, True, True, guide=True),
)


def _mark(flag: bool) -> str:
    return "✓" if flag else "✗"


def _cells(m: MethodScores) -> str:
    thin = m.thin_water_recall
    return (f"| {100 * m.headline:.2f} | {100 * m.scores.macc:.2f} | {100 * m.boundary_f:.2f} "
            f"| {'-' if thin is None else f'{100 * thin:.2f}'} |")


def render_table_i(results: list[tuple[AblationRow, MethodReport]], baseline: MethodReport | None = None) -> str:
    """Markdown Table I: one line per row's model, then the baseline's and the majority class's
    (``baseline``: the per-pixel baseline's evaluation on the same split)."""
    lines = ["| Pretraining | High-res feat. | Refine-Up | α-scale | Image guide | mIoU | mAcc | boundary F (2 px) "
             "| thin-water recall |", "|---|---|---|---|---|---|---|---|---|"]
    for row, report in results:
        lines.append(f"| {_mark(row.pretraining)} | {_mark(row.highres)} | {_mark(row.refine_up)} "
                     f"| {_mark(row.alpha_scale)} | {_mark(row.guide)} " + _cells(report.model))
    if baseline is not None:
        lines.append("| per-pixel baseline (GBT) | | | | | " + _cells(baseline.model)[2:])
        lines.append(f"| {baseline.majority.name} | | | | | " + _cells(baseline.majority)[2:])
    return "\n".join(lines) + "\n"


def _train_row(cfg: TrainConfig) -> Path:
    """The row's finished run directory: trained now, or kept from an earlier ablation into the
    same OUT with the same settings (a stopped ablation goes on from where it stopped: a finished
    row is kept, an unfinished one resumed from its last checkpoint)."""
    run_dir = safe_child(cfg.out, cfg.name)  # as prepare_run names it
    if not run_dir.exists():
        return run_training(cfg).run_dir
    if load_run_config(run_dir) != absolute_inputs(cfg):
        raise InputError(f"{run_dir} holds a run with other settings; give another --out")
    if (read_json(run_dir / "summary.json") or {}).get("status") == "finished":
        return run_dir
    return run_training(cfg, resume=True).run_dir


def run_ablation(base: TrainConfig, init: str, out: Path, split: str = "val", eval_data: str | None = None) -> str:
    """Train and evaluate every row of Table I on ``split`` of ``eval_data`` (default: the training
    dataset), and the per-pixel baseline fitted on the training split; write OUT/table.md and
    OUT/table.json."""
    from nationmap.baseline.bundle import fit_baseline

    if base.task != "lulc":
        raise InputError("the ablation finetunes LULC models")
    if not init:
        raise InputError("the ablation needs --init PRETRAINED for its pretrained rows")
    out, data = Path(out), eval_data or base.data
    results = []
    for row in TABLE_I:
        run_dir = _train_row(row.config(base.replace(out=str(out)), init))
        bundle = write_bundle(out / "bundles" / row.name, find_checkpoint(run_dir, "best"))
        results.append((row, evaluate(bundle, data, split, out / "eval" / row.name).report))
    baseline_bundle = fit_baseline(base.data, "lulc", out / "bundles" / "baseline", log=lambda *_: None)
    baseline = evaluate(baseline_bundle, data, split, out / "eval" / "baseline").report
    table = render_table_i(results, baseline)
    where = f"the {split} split" + ("" if eval_data is None else f" of {eval_data} (held out)")
    with atomic_file(out / "table.md") as f:
        f.write(f"Table I on {where} (%), {base.preset}, {base.epochs} epochs\n\n" + table)
    rows = [{**row.__dict__, "run": row.name, **r.model.to_dict()} for row, r in results]
    rows.append({"run": "baseline", **baseline.model.to_dict()})
    with atomic_file(out / "table.json") as f:
        f.write(json.dumps(rows, indent=2))
    return table
