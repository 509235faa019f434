"""Fixtures for inference: random-weight tiny bundles (64 px input) for both tasks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

INPUT = 64


def make_bundle(root: Path, task: str, seed: int) -> Path:
    from nationmap.data.lulc import load_class_table
    from nationmap.models import SegmentationConfig, SegmentationModel
    from nationmap.train.checkpoint import save_training_state, write_bundle

    base = SegmentationConfig.from_preset("tiny", task)
    cfg = base.replace(encoder=base.encoder.replace(img_size=INPUT))
    torch.manual_seed(seed)
    model = SegmentationModel(cfg)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    meta = {"task": task, "model_config": cfg.to_dict(), "normalisation": {"mean_db": -12.0, "std_db": 6.5},
            "class_table": load_class_table().to_dict(), "scheme": "lulc9" if task == "lulc" else "water",
            "threshold": 0.5 if task == "water" else None, "epoch": 0, "step": 0, "metrics": {}}
    save_training_state(root / f"ckpt-{task}", model, optimizer, meta)
    return write_bundle(root / task, root / f"ckpt-{task}")


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"lulc": make_bundle(root, "lulc", 0), "water": make_bundle(root, "water", 1)}
