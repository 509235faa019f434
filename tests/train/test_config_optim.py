"""Job specs, config validation, parameter groups and the learning-rate schedule."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from nationmap.errors import InputError
from nationmap.models import SegmentationConfig, SegmentationModel
from nationmap.train.config import TrainConfig, load_job_spec, resolve_config
from nationmap.train.optim import build_optimizer, build_scheduler, param_groups


def test_job_specs_carry_the_papers_hyperparameters():
    pre = resolve_config("pretrain", None, {})
    assert (pre.preset, pre.method, pre.epochs, pre.batch_size, pre.lr, pre.warmup_epochs, pre.betas) == (
        "swin-b", "mixmae", 600, 2048, 1.5e-4, 40, (0.9, 0.95))
    assert pre.lr_batch_scaling and pre.peak_lr == pytest.approx(1.5e-4 * 2048 / 256) and pre.min_lr == 0.0
    lulc = resolve_config("lulc", None, {})
    assert (lulc.epochs, lulc.batch_size, lulc.lr, lulc.layer_decay, lulc.min_lr, lulc.warmup_epochs) == (
        200, 512, 6e-4, 0.7, 1e-6, 10)
    assert (lulc.alpha_scale, lulc.gamma, lulc.lambda_focal, lulc.lambda_dice) == (2.25, 1.1, 0.57, 0.32)
    assert lulc.weight_decay == 0.05 and lulc.highres and lulc.refine_up
    water = resolve_config("water", None, {})
    assert (water.epochs, water.lambda_dice) == (100, 1.0)


def test_options_override_the_spec():
    cfg = resolve_config("lulc", None, {"preset": "tiny", "epochs": 3, "batch_size": 8, "workers": 2, "lr": None})
    assert (cfg.preset, cfg.epochs, cfg.batch_size, cfg.batch_per_worker, cfg.lr) == ("tiny", 3, 8, 4, 6e-4)
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("overrides, message", [
    ({"batch_size": 9, "workers": 2}, "multiple of the 2 workers"),
    ({"preset": "swin-q"}, "unknown model preset"),
    ({"epochs": 0}, "epochs must be positive"),
    ({"init": "x", "no_pretrain": True}, "exclude each other"),
    ({"bogus": 1}, "unknown training option"),
])
def test_bad_options_are_refused(overrides, message):
    with pytest.raises(InputError, match=message):
        resolve_config("lulc", None, overrides)


def test_missing_spec_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_job_spec(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(InputError, match="not valid TOML"):
        load_job_spec(bad)


def test_layer_decay_groups():
    cfg = resolve_config("lulc", None, {"preset": "tiny"})
    model = SegmentationModel(SegmentationConfig.from_preset("tiny", "lulc"))
    groups = param_groups(model, cfg)
    scale_of = {}
    for g in groups:
        for p in g["params"]:
            scale_of[id(p)] = (g["lr_scale"], g["weight_decay"])
    swin = model.encoder.swin
    blocks = [b for stage in swin.layers for b in stage.blocks]
    # timm's BEiT-style grouping: patch embedding lowest, then one layer per block, top at full lr
    assert scale_of[id(swin.patch_embed.proj.weight)][0] == pytest.approx(0.7 ** len(blocks))
    for i, block in enumerate(blocks[:-1]):
        assert scale_of[id(block.mlp.fc1.weight)][0] == pytest.approx(0.7 ** (len(blocks) - 1 - i))
    assert scale_of[id(model.decoder.fuse[0].weight)] == (1.0, 0.05)
    assert scale_of[id(model.decoder.fuse[1].weight)][1] == 0.0  # BatchNorm: no weight decay
    table = swin.layers[0].blocks[0].attn.relative_position_bias_table
    assert scale_of[id(table)][1] == 0.0
    assert len(scale_of) == len(list(model.parameters()))


def test_warmup_then_cosine_to_min_lr():
    cfg = TrainConfig(task="lulc", preset="tiny", epochs=10, lr=1e-3, min_lr=1e-5, warmup_epochs=2, layer_decay=1.0)
    model = torch.nn.Linear(2, 2)
    model.encoder = SegmentationModel(SegmentationConfig.from_preset("tiny")).encoder  # param_groups needs .encoder
    opt = build_optimizer(model, cfg)
    sched = build_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for step in range(100):
        sched.step_update(step)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[0] == 0.0 and lrs[10] == pytest.approx(0.5e-3)
    assert lrs[20] == pytest.approx(1e-3)
    assert lrs[60] == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5) * (1 + math.cos(math.pi * 40 / 80)))
    assert lrs[99] == pytest.approx(1e-5, rel=0.05)
    assert all(a <= b for a, b in zip(lrs[:20], lrs[1:21])) and all(a >= b for a, b in zip(lrs[20:99], lrs[21:100]))


def _method(name: str, miou: float, macc: float, boundary_f: float, thin: float | None):
    from nationmap.metrics import MethodScores, SegmentationScores, StructureScores

    scores = SegmentationScores(classes=(), miou=miou, macc=macc, overall_accuracy=0.0, pixels=1)
    return MethodScores(name, scores, StructureScores({}, boundary_f, thin, 0, 2, 3))


def test_ablation_rows_are_table_i():
    from nationmap.metrics import MethodReport
    from nationmap.train.ablate import TABLE_I, render_table_i

    base = resolve_config("lulc", None, {"preset": "tiny", "data": "d"})
    configs = [row.config(base, "PRE") for row in TABLE_I]
    assert [(bool(c.init), c.highres, c.refine_up, c.alpha_scale, c.guide) for c in configs] == [
        (True, False, False, 1.0, False), (True, True, False, 1.0, False), (True, True, True, 1.0, False),
        (False, True, True, 2.25, False), (True, True, True, 2.25, False), (True, True, True, 2.25, True)]
    assert configs[3].no_pretrain and len({c.name for c in configs}) == 6
    majority = _method("majority class (Forest)", 0.07, 0.11, 0.0, 0.0)
    model = MethodReport("lulc", _method("nationmap", 0.5026, 0.6112, 0.4, 0.25), majority, None, "")
    baseline = MethodReport("lulc", _method("nationmap", 0.41, 0.5, 0.3, None), majority, None, "")
    lines = render_table_i([(row, model) for row in TABLE_I], baseline).splitlines()
    assert lines[-3] == "| ✓ | ✓ | ✓ | ✓ | ✓ | 50.26 | 61.12 | 40.00 | 25.00 |"
    assert lines[-4] == "| ✓ | ✓ | ✓ | ✓ | ✗ | 50.26 | 61.12 | 40.00 | 25.00 |"
    assert lines[-2] == "| per-pixel baseline (GBT) | | | | | 41.00 | 50.00 | 30.00 | - |"
    assert lines[-1] == "| majority class (Forest) | | | | | 7.00 | 11.00 | 0.00 | 0.00 |"


def test_ablation_keeps_a_finished_row_and_refuses_other_settings(tmp_path, monkeypatch):
    import json
    from types import SimpleNamespace

    from nationmap.train import ablate
    from nationmap.train.run import absolute_inputs

    row = ablate.TABLE_I[1].config(resolve_config("lulc", None, {"preset": "tiny", "data": "d", "out": str(tmp_path)}),
                                   "PRE")
    run_dir = tmp_path / row.name
    run_dir.mkdir()
    absolute_inputs(row).write(run_dir / "config.json")  # as prepare_run writes it
    (run_dir / "summary.json").write_text(json.dumps({"status": "finished"}))
    calls = []
    monkeypatch.setattr(ablate, "run_training",
                        lambda cfg, resume=False: calls.append(resume) or SimpleNamespace(run_dir=run_dir))
    assert ablate._train_row(row) == run_dir.resolve() and calls == []  # kept, not retrained
    (run_dir / "summary.json").write_text(json.dumps({"status": "failed"}))
    ablate._train_row(row)
    assert calls == [True]  # an unfinished row is resumed
    with pytest.raises(InputError, match="holds a run with other settings"):
        ablate._train_row(row.replace(epochs=row.epochs + 1))


@pytest.mark.parametrize("overrides, message", [
    ({"lr": float("nan")}, "training option lr must be a finite number, not nan"),
    ({"alpha_scale": float("inf")}, "alpha_scale must be a finite number"),
    ({"epochs": "ten"}, "training option epochs must be an integer, not 'ten'"),
    ({"epochs": 2.0}, "epochs must be an integer"),
    ({"highres": 1}, "highres must be true or false"),
    ({"betas": [0.9]}, "betas must be a list of 2"),
    ({"epoch": 3}, "unknown training option 'epoch' (did you mean 'epochs'?)"),
])
def test_options_are_checked_by_the_one_rule(overrides, message):
    with pytest.raises(InputError) as info:
        resolve_config("lulc", None, overrides)
    assert message in str(info.value)


def test_a_config_built_in_code_is_checked_too():
    cfg = TrainConfig(task="lulc", preset="tiny", betas=[0.8, 0.9], warmup_epochs=2)
    assert cfg.betas == (0.8, 0.9) and isinstance(cfg.warmup_epochs, float)
    with pytest.raises(InputError, match="lr must be a finite number"):
        cfg.replace(lr=float("nan"))


@dataclasses.dataclass(frozen=True)
class Inner:
    a: int = 1


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str
    share: float = 0.5
    sizes: tuple[int, ...] = (1,)
    note: str | None = None
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_the_one_rule_on_a_plain_dataclass():
    from nationmap.config import check_types, default_of, from_dict

    assert from_dict(Outer, {"name": "x", "share": 1, "sizes": [2, 3], "inner": {"a": 4}}) == Outer(
        "x", 1.0, (2, 3), None, Inner(4))
    for values, message in (({}, "setting 'name' is required"), ({"name": 3}, "name must be a string, not 3"),
                            ({"name": "x", "note": 1}, "note must be a string or none"),
                            ({"name": "x", "inner": {"b": 1}}, "unknown inner 'b'")):
        with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
            from_dict(Outer, values)
    assert check_types(Outer, {"share": 2}) == {"share": 2.0}  # partial tables (job specs) are checked
    assert default_of(Outer, "sizes") == (1,) and default_of(Outer, "inner") == Inner()


def test_infer_config_takes_window_and_cell_defaults_from_their_settings():
    from nationmap.config import default_of
    from nationmap.devices import CPU_BATCH
    from nationmap.infer.config import InferConfig
    from nationmap.infer.windows import WindowSettings
    from nationmap.products.cells import CellSettings

    cfg = InferConfig.from_dict({"region": "demo", "month": "2022-09", "lulc_model": "m"})
    assert cfg.window_settings(256) == WindowSettings(size=256, batch_size=CPU_BATCH)  # batch "auto", CPU until known
    assert cfg.cell_settings() == CellSettings()
    assert cfg.overlap == default_of(WindowSettings, "overlap") and cfg.cell_block == default_of(CellSettings, "block")
    with pytest.raises(InputError, match="cpus_per_actor must be a finite number, not nan"):
        InferConfig.from_dict({"region": "demo", "month": "2022-09", "lulc_model": "m", "cpus_per_actor": float("nan")})
