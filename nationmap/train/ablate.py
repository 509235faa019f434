"""The paper's Table I: five LULC finetuning runs toggling pretraining, high-res features,
refine-up and alpha-scale, each evaluated on the validation split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nationmap.errors import InputError
from nationmap.files import atomic_file
from nationmap.train.checkpoint import find_checkpoint, write_bundle
from nationmap.train.config import TrainConfig
from nationmap.train.evaluate import evaluate
from nationmap.train.run import run_training


@dataclass(frozen=True)
class AblationRow:
    pretraining: bool
    highres: bool
    refine_up: bool
    alpha_scale: bool

    @property
    def name(self) -> str:
        flags = zip(("pre", "hr", "ru", "as"), (self.pretraining, self.highres, self.refine_up, self.alpha_scale))
        return "ablate-" + "-".join(f"{k}{int(v)}" for k, v in flags)

    def config(self, base: TrainConfig, init: str) -> TrainConfig:
        return base.replace(
            name=self.name, highres=self.highres, refine_up=self.refine_up,
            alpha_scale=base.alpha_scale if self.alpha_scale else 1.0,
            init=init if self.pretraining else "", no_pretrain=not self.pretraining)


# The rows of Table I, in the paper's order.
TABLE_I = (
    AblationRow(True, False, False, False),
    AblationRow(True, True, False, False),
    AblationRow(True, True, True, False),
    AblationRow(False, True, True, True),
    AblationRow(True, True, True, True),
)


def _mark(flag: bool) -> str:
    return "✓" if flag else "✗"


def render_table_i(results: list[tuple[AblationRow, dict]]) -> str:
    lines = ["| Pretraining | High-res feat. | Refine-Up | α-scale | mIoU | mAcc |", "|---|---|---|---|---|---|"]
    for row, scores in results:
        lines.append(f"| {_mark(row.pretraining)} | {_mark(row.highres)} | {_mark(row.refine_up)} | {_mark(row.alpha_scale)} "
                     f"| {100 * scores['miou']:.2f} | {100 * scores['macc']:.2f} |")
    return "\n".join(lines) + "\n"


def run_ablation(base: TrainConfig, init: str, out: Path, split: str = "val") -> str:
    """Train and evaluate every row of Table I; write OUT/table.md and OUT/table.json."""
    if base.task != "lulc":
        raise InputError("the ablation finetunes LULC models")
    if not init:
        raise InputError("the ablation needs --init PRETRAINED for its pretrained rows")
    out = Path(out)
    results = []
    for row in TABLE_I:
        run = run_training(row.config(base.replace(out=str(out)), init))
        bundle = write_bundle(out / "bundles" / row.name, find_checkpoint(run.run_dir, "best"))
        scores = evaluate(bundle, base.data, split, out / "eval" / row.name)
        results.append((row, scores))
    table = render_table_i(results)
    with atomic_file(out / "table.md") as f:
        f.write(f"Table I on the {split} split (%), {base.preset}, {base.epochs} epochs\n\n" + table)
    with atomic_file(out / "table.json") as f:
        f.write(json.dumps([{**row.__dict__, "run": row.name, "miou": s["miou"], "macc": s["macc"]}
                            for row, s in results], indent=2))
    return table
