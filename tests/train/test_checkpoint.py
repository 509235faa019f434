"""Checkpoints and bundles: round trips, and clear errors (never code execution) on bad files."""

from __future__ import annotations

import json
import pickle

import pytest
import torch

from nationmap.errors import InputError
from nationmap.models import SegmentationConfig, SegmentationModel
from nationmap.train.checkpoint import (
    CheckpointError,
    load_bundle,
    load_encoder_weights,
    load_training_state,
    save_training_state,
    write_bundle,
)
from nationmap.train.config import TrainConfig
from nationmap.train.optim import build_optimizer

CFG = SegmentationConfig.from_preset("tiny", "water").replace(encoder=SegmentationConfig.from_preset("tiny").encoder.replace(img_size=64))


def _trained_state(tmp_path):
    torch.manual_seed(0)
    model = SegmentationModel(CFG)
    opt = build_optimizer(model, TrainConfig(task="water", preset="tiny"))
    model(torch.randn(2, 1, 64, 64)).mean().backward()
    opt.step()
    meta = {"task": "water", "model_config": CFG.to_dict(), "normalisation": {"mean_db": -11.0, "std_db": 6.0},
            "class_table": None, "scheme": "water", "threshold": 0.5, "epoch": 3, "step": 30,
            "metrics": {"val_water_iou": 0.9}, "scheduler": {"x": 1}}
    save_training_state(tmp_path / "ckpt", model, opt, meta)
    return model, opt


def test_training_state_round_trip(tmp_path):
    model, opt = _trained_state(tmp_path)
    state = load_training_state(tmp_path / "ckpt")
    assert state.meta["epoch"] == 3 and state.meta["model_kind"] == "segmentation"
    assert all(torch.equal(state.model[k], v) for k, v in model.state_dict().items())
    fresh = SegmentationModel(CFG)
    opt2 = build_optimizer(fresh, TrainConfig(task="water", preset="tiny"))
    opt2.load_state_dict(state.optimizer)
    a, b = opt.state_dict(), opt2.state_dict()
    for i in a["state"]:
        for name, value in a["state"][i].items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(b["state"][i][name]))
    assert [g["lr"] for g in a["param_groups"]] == [g["lr"] for g in b["param_groups"]]


def test_a_moving_average_is_kept_and_exported(tmp_path):
    model, opt = _trained_state(tmp_path)
    torch.manual_seed(1)
    average = SegmentationModel(CFG)  # stands for the averaged copy: other weights, same keys
    save_training_state(tmp_path / "ema", model, opt, load_training_state(tmp_path / "ckpt").meta, ema=average)
    state = load_training_state(tmp_path / "ema")
    assert all(torch.equal(state.model[k], v) for k, v in model.state_dict().items())  # resumes the raw weights
    assert all(torch.equal(state.ema[k], v) for k, v in average.state_dict().items())
    assert load_training_state(tmp_path / "ckpt").ema is None
    write_bundle(tmp_path / "bundle", tmp_path / "ema")
    bundle = load_bundle(tmp_path / "bundle")
    assert all(torch.equal(bundle.model.state_dict()[k], v) for k, v in average.state_dict().items())
    encoder = load_encoder_weights(tmp_path / "ema")
    assert torch.equal(encoder["swin.patch_embed.proj.weight"], average.state_dict()["encoder.swin.patch_embed.proj.weight"])


def test_bundle_round_trip(tmp_path):
    model, _ = _trained_state(tmp_path)
    write_bundle(tmp_path / "bundle", tmp_path / "ckpt")
    bundle = load_bundle(tmp_path / "bundle")
    assert bundle.task == "water" and bundle.normalisation == {"mean_db": -11.0, "std_db": 6.0}
    model.eval()
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.equal(bundle.model(x), model(x))
    assert set(p.name for p in (tmp_path / "bundle").iterdir()) == {"model.json", "model.safetensors"}
    enc = load_encoder_weights(tmp_path / "bundle")
    assert all(k.startswith("swin.") for k in enc)
    from nationmap.train.evaluate import evaluate

    with pytest.raises(InputError, match="is a water model, not lulc"):  # refused before any work
        evaluate(tmp_path / "bundle", tmp_path / "no-dataset", "test", tmp_path / "eval", task="lulc")
    assert not (tmp_path / "eval").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))  # would create the marker file if unpickled


def test_corrupt_or_foreign_files_give_clear_errors_not_code_execution(tmp_path):
    _trained_state(tmp_path)
    write_bundle(tmp_path / "bundle", tmp_path / "ckpt")
    marker = tmp_path / "pwned"
    evil = pickle.dumps({"weights": _Payload(str(marker))})

    (tmp_path / "bundle" / "model.safetensors").write_bytes(evil)
    with pytest.raises(CheckpointError, match="corrupt or foreign weights"):
        load_bundle(tmp_path / "bundle")
    torch.save({"x": torch.zeros(1)}, tmp_path / "ckpt" / "optimizer.safetensors")  # a pickle-based torch file
    with pytest.raises(CheckpointError, match="corrupt or foreign weights"):
        load_training_state(tmp_path / "ckpt")
    assert not marker.exists()

    (tmp_path / "ckpt" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not JSON"):
        load_training_state(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "state.json").write_text(json.dumps({"format": "someone-else/3"}))
    with pytest.raises(CheckpointError, match="not a nationmap-checkpoint/1"):
        load_training_state(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="not found"):
        load_bundle(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        load_encoder_weights(tmp_path / "empty")


def test_foreign_model_weights_are_refused(tmp_path):
    _trained_state(tmp_path)
    write_bundle(tmp_path / "bundle", tmp_path / "ckpt")
    meta = json.loads((tmp_path / "bundle" / "model.json").read_text())
    meta["model_config"]["decoder_channels"] = 64  # the weights were made for 48 channels
    (tmp_path / "bundle" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="has shape"):
        load_bundle(tmp_path / "bundle")


def test_resume_drops_only_the_checkpoints_ray_does_not_list(tmp_path):
    from nationmap.train.run import drop_orphan_checkpoints

    run = tmp_path / "run"
    for name in ("checkpoint_a", "checkpoint_b", "checkpoint_c", "best"):
        (run / name).mkdir(parents=True)
        (run / name / "state.json").write_text("{}")
    assert drop_orphan_checkpoints(run) == []  # no snapshot: nothing is known to be an orphan
    (run / "checkpoint_manager_snapshot.json").write_text("not json")
    assert drop_orphan_checkpoints(run) == []
    snapshot = {"checkpoint_results": [{"checkpoint_dir_name": "checkpoint_a"}],
                "latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_b"}}
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps(snapshot))
    assert drop_orphan_checkpoints(run) == ["checkpoint_c"]
    assert sorted(p.name for p in run.iterdir() if p.is_dir()) == ["best", "checkpoint_a", "checkpoint_b"]
