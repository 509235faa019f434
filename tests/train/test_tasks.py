"""The training tasks and the real training step, without Ray: a tiny model on 32 px batches
learns (finite, decreasing loss), validates to the task's metrics, and a non-finite loss stops
the step before any weight changes."""

from __future__ import annotations

import math

import pytest
import torch

from nationmap.errors import InputError
from nationmap.train.config import PRECISIONS, TrainConfig
from nationmap.train.optim import build_ema, build_optimizer, build_scheduler
from nationmap.train.step import NonFiniteLoss, Optimisation, autocast, train_epoch, train_step
from nationmap.train.tasks import PretrainTask, SegmentationTask, make_task

P = 32  # patch size: the tiny preset's smallest sensible input
CPU = torch.device("cpu")
META = {"class_frequencies": {"train": {"lulc9": {"pixels": [5, 1, 3, 2, 4, 1, 1, 2, 3]}}}}
CASES = {  # id -> (task, TrainConfig overrides)
    "lulc": ("lulc", {}),
    "water": ("water", {}),
    "mixmae": ("pretrain", {"method": "mixmae"}),
    "simmim": ("pretrain", {"method": "simmim"}),
}
METRICS = {
    "lulc": {"val_loss", "val_miou", "val_macc"},
    "water": {"val_loss", "val_water_iou", "val_precision", "val_recall"},
    "pretrain": {"val_loss"},
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One torch thread: these tiny steps are fastest so, and unaffected by other load."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _batch(task: str, n: int = 4, seed: int = 0) -> dict:
    """A batch as the loop sees it: x, db, valid (N, 1, P, P) and, finetuning, target (N, P, P)
    uint8 that follows the input's brightness (learnable), 255 where there is no data."""
    g = torch.Generator().manual_seed(seed)
    db = -15 + 5 * torch.randn(n, 1, P, P, generator=g)
    db[0, 0, :4, :6] = float("nan")  # a no-data corner
    valid = torch.isfinite(db)
    batch = {"x": torch.where(valid, (db + 11) / 6, 0.0), "db": db, "valid": valid}
    if task != "pretrain":
        k = 9 if task == "lulc" else 2
        level = ((db[:, 0] + 25) / 20 * k).clamp(0, k - 1)
        batch["target"] = torch.where(valid[:, 0], level, 255).to(torch.uint8)
    return batch


def _setup(case: str, seed: int = 0, **overrides):
    task_name, extra = CASES[case]
    cfg = TrainConfig(task=task_name, preset="tiny", no_pretrain=task_name != "pretrain", epochs=1, batch_size=4,
                      lr=2e-3, warmup_epochs=0.0, drop_path=0.0, seed=seed, **{**extra, **overrides})
    torch.manual_seed(seed)
    task = make_task(cfg, META).to(CPU)
    model = task.build_model(P)
    optimizer = build_optimizer(model, cfg)
    return task, Optimisation(model, optimizer, build_scheduler(optimizer, cfg, 100), cfg.clip_grad,
                              ema=build_ema(model, cfg))


def _steps(case: str, n: int = 8, seed: int = 0, **overrides) -> tuple[list[float], Optimisation]:
    task, opt = _setup(case, seed, **overrides)
    batch = _batch(task.name)
    opt.model.train()
    return [train_step(task, opt, batch, CPU) for _ in range(n)], opt


def test_the_factory_picks_one_task_object_per_task():
    for case, (task_name, _) in CASES.items():
        task, _ = _setup(case)
        assert isinstance(task, PretrainTask if task_name == "pretrain" else SegmentationTask)
        assert task.checkpoint_meta()["task"] == task_name
    water, _ = _setup("water")
    lulc, _ = _setup("lulc")
    assert water.checkpoint_meta() == {"task": "water", "scheme": "water", "threshold": 0.5}
    assert lulc.checkpoint_meta() == {"task": "lulc", "scheme": "lulc9", "threshold": None}
    assert (lulc.monitor, water.monitor) == (("val_miou", "max"), ("val_water_iou", "max"))


@pytest.mark.parametrize("case", list(CASES))
def test_train_step_learns_one_batch(case):
    losses, opt = _steps(case)
    assert all(math.isfinite(v) for v in losses), losses
    assert opt.step == len(losses)
    assert losses[-1] < 0.98 * losses[0], losses  # overfits the one batch it sees
    assert losses[-1] < min(losses[:2]), losses


@pytest.mark.parametrize("case", ["lulc", "mixmae"])
def test_bf16_on_the_cpu_learns_with_float32_weights(case):
    fp32, _ = _steps(case, n=4, seed=3, precision="fp32")
    bf16, opt = _steps(case, n=8, seed=3, precision="bf16")
    assert bf16[0] != fp32[0] and abs(bf16[0] - fp32[0]) < 0.05 * abs(fp32[0])  # bf16, close to float32
    assert bf16[-1] < 0.98 * bf16[0], bf16
    assert {p.dtype for p in opt.core.parameters()} == {torch.float32}  # autocast: master weights stay fp32


def test_precision_picks_the_autocast_dtype():
    layer, x = torch.nn.Linear(4, 4), torch.randn(2, 4)
    dtypes = {}
    for precision in PRECISIONS:
        with autocast(CPU, precision):
            dtypes[precision] = layer(x).dtype
    assert dtypes == {"auto": torch.float32, "bf16": torch.bfloat16, "fp32": torch.float32}
    with pytest.raises(InputError, match="unknown precision 'fp16'"):
        TrainConfig(task="lulc", precision="fp16")


def test_moving_average_follows_the_warmed_up_decay():
    """The average after each step, recomputed by hand: step 1 copies the weights, step t mixes in
    the new weights with 1 - d_t, d_t = min(0.9, 1 - t'^-3/4) for t' = t (timm counts from 0)."""
    task, opt = _setup("water", ema_decay=0.9)
    batch, expected = _batch("water"), None
    opt.model.train()
    for step in range(1, 6):
        train_step(task, opt, batch, CPU)
        weights = {k: v.detach().clone() for k, v in opt.core.state_dict().items() if v.is_floating_point()}
        decay = 0.0 if step == 1 else min(0.9, 1 - step ** -0.75)
        expected = weights if expected is None else {k: decay * expected[k] + (1 - decay) * w for k, w in weights.items()}
    averaged = opt.evaluated.state_dict()
    assert opt.evaluated is opt.ema.module and opt.evaluated is not opt.core
    assert all(torch.allclose(averaged[k], v, atol=1e-6) for k, v in expected.items())
    assert not all(torch.equal(averaged[k], v) for k, v in weights.items())  # not the last weights
    _, plain = _setup("water")
    assert plain.ema is None and plain.evaluated is plain.core
    with pytest.raises(InputError, match="ema-decay must be in"):
        TrainConfig(task="lulc", ema_decay=1.0)


@pytest.mark.parametrize("case", ["lulc", "mixmae"])
def test_same_seed_same_numbers(case):
    a, opt_a = _steps(case, n=3, seed=5)
    b, opt_b = _steps(case, n=3, seed=5)
    c, _ = _steps(case, n=3, seed=6)
    assert a == b and a != c
    assert all(torch.equal(x, y) for x, y in zip(opt_a.core.state_dict().values(), opt_b.core.state_dict().values()))


@pytest.mark.parametrize("case", list(CASES))
def test_validate_gives_the_task_metrics(case):
    task, opt = _setup(case)
    opt.model.eval()
    # a batch of one is skipped by MixMAE (no partner to mix with), scored by the others
    batches = [_batch(task.name, seed=3), _batch(task.name, n=1, seed=4)]
    first = task.validate(opt.core, batches, CPU)
    assert set(first) == METRICS[task.name] and next(iter(first)) == "val_loss"
    assert math.isfinite(first["val_loss"]) and first["val_loss"] > 0
    for key in set(first) - {"val_loss"}:
        assert math.isnan(first[key]) or 0.0 <= first[key] <= 1.0, (key, first[key])
    assert task.validate(opt.core, batches, CPU) == pytest.approx(first, nan_ok=True)  # fixed masks
    alone = task.validate(opt.core, batches[:1], CPU)["val_loss"]
    assert (alone == first["val_loss"]) == (case == "mixmae")  # the batch of one counts, except for MixMAE


@pytest.mark.parametrize("case", list(CASES))
def test_a_non_finite_loss_stops_the_step_before_any_update(case):
    task, opt = _setup(case)
    batch = _batch(task.name)
    train_step(task, opt, batch, CPU)
    # parameters, not buffers: the failed forward pass has already moved BatchNorm's running
    # statistics, but the run stops there without a checkpoint
    before = {k: v.detach().clone() for k, v in opt.core.named_parameters()}
    lr = opt.lr
    bad = {**batch, "x": batch["x"].clone()}
    bad["x"][1, 0, 5, 5] = float("nan")  # one NaN input pixel poisons the loss
    with pytest.raises(NonFiniteLoss, match=r"loss became nan at step 2") as info:
        train_step(task, opt, bad, CPU)
    assert math.isnan(info.value.loss) and info.value.step == 2
    assert opt.step == 1 and opt.lr == lr
    assert all(torch.equal(before[k], v) for k, v in opt.core.named_parameters())


def test_an_infinite_loss_is_caught_too():
    task, opt = _setup("water")

    class Infinite(torch.nn.Module):
        def forward(self, logits, labels):
            return logits.sum() * float("inf")

    task.loss_fn = Infinite()
    with pytest.raises(NonFiniteLoss, match=r"loss became (inf|-inf|nan) at step 1"):
        train_step(task, opt, _batch("water"), CPU)
    assert opt.step == 0


def test_train_epoch_steps_then_drains_without_decoding():
    task, opt = _setup("lulc")
    decoded = []

    def decode(i):
        decoded.append(i)
        return _batch("lulc", seed=i)

    stats = train_epoch(task, opt, iter(range(5)), 3, decode, CPU, torch.Generator().manual_seed(0))
    assert decoded == [0, 1, 2] and opt.step == 3
    assert stats.samples == 12 and math.isfinite(stats.loss_sum) and stats.loss_sum > 0
    assert stats.seconds >= stats.data_wait >= 0 and stats.started > 0
    assert opt.model.training


def test_train_epoch_passes_a_non_finite_stop_on():
    task, opt = _setup("water")
    batches = [_batch("water", seed=1), _batch("water", seed=2)]
    batches[1]["x"][0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLoss) as info:
        train_epoch(task, opt, batches, 10, lambda b: b, CPU)
    assert info.value.step == 2 and opt.step == 1
