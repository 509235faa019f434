"""Training runs on Ray Train: a local run with export and eval, --resume after a stop, a killed
worker on a two-node cluster, and a non-finite loss. Tiny preset, 64 px patches, CPU."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from nationmap.devices import choose_precision, probe_bf16
from nationmap.train.checkpoint import find_checkpoint, write_bundle
from nationmap.train.config import resolve_config
from nationmap.train.evaluate import confusion_title, evaluate
from nationmap.train.progress import read_steps
from nationmap.train.run import TrainingError, load_run_config, run_training

pytestmark = pytest.mark.ray
NATIONMAP = [sys.executable, "-m", "nationmap.cli.main"]


def _cfg(task, data, out, name, **kw):
    spec = Path(__file__).resolve().parents[2] / "jobs" / "cpu-demo" / f"{task}.toml"
    args = dict(data=str(data), out=str(out), name=name, epochs=2, batch_size=4, warmup_epochs=0.5, seed=0)
    args.update(kw)
    return resolve_config(task, spec, args)


def _curve_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "curves.csv"
    if not path.exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _wait_for_epochs(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until ``n`` epochs are done and Ray has registered their checkpoint."""
    t0 = time.time()
    while len(_curve_rows(run_dir)) < n or not (run_dir / "checkpoint_manager_snapshot.json").exists():
        if proc.poll() is not None:
            raise AssertionError(f"run ended early ({proc.returncode}): {proc.stdout.read()[-3000:] if proc.stdout else ''}")
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting for epochs")
        time.sleep(0.1)


def test_pretrain_finetune_export_eval(ray_local, train_dataset, tmp_path, monkeypatch):
    pre = run_training(_cfg("pretrain", train_dataset, tmp_path, "pre", epochs=1))
    assert pre.summary["status"] == "finished" and pre.summary["best"]["metric"] == "val_loss"
    # dataset and encoder relative to the caller's directory, as typed on the command line: the
    # workers run elsewhere (a relative --init used to fail there after the driver's checks passed)
    monkeypatch.chdir(tmp_path)
    # precision auto (the cpu-demo specs) decided by the workers' hardware: pretraining on this
    # machine's CPU as it is; finetuning on a CPU without native bf16 (the probe patched)
    here = choose_precision("auto", probe_bf16("cpu"))
    assert pre.summary["devices"]["precision"]["chosen"] == here.chosen
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    lulc = run_training(_cfg("lulc", os.path.relpath(train_dataset), "out", "lulc", init="pre"))
    run_dir = lulc.run_dir
    assert lulc.summary["status"] == "finished" and lulc.summary["epochs"] == 2
    assert lulc.summary["devices"]["precision"] == {
        "format": "nationmap-precision/1", "requested": "auto", "chosen": "fp32", "device": probe_bf16("cpu").describe(),
        "reason": "auto: bf16 would be emulated"}
    recorded = json.loads((run_dir / "config.json").read_text())
    assert recorded["init"] == str(pre.run_dir) and recorded["data"] == str(Path(train_dataset).resolve())
    rows = _curve_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == [1, 2] and "val_miou" in rows[0] and "lr" in rows[0]
    assert (run_dir / "curves.png").stat().st_size > 1000
    epoch, step, steps = read_steps(run_dir / "steps.json")  # what the driver's steps bar followed
    assert epoch == 2 and step == steps > 0  # the last step of the last epoch
    assert (run_dir / "best" / "state.json").exists()
    assert len([d for d in run_dir.glob("checkpoint_*") if d.is_dir()]) == 2  # keep_last = 2
    state = json.loads((find_checkpoint(run_dir, "last") / "state.json").read_text())
    assert state["epoch"] == 2 and state["normalisation"]["std_db"] > 0 and state["scheme"] == "lulc9"
    write_bundle(tmp_path / "bundle", find_checkpoint(run_dir, "best"))
    result = evaluate(tmp_path / "bundle", train_dataset, "test", tmp_path / "eval")
    assert 0.0 <= result.report.model.headline <= 1.0 and result.report.majority.headline > 0
    assert {p.name for p in (tmp_path / "eval").iterdir()} == {"metrics.json", "table.md", "confusion.png"}
    assert "| Method | Water | Built-up |" in (tmp_path / "eval" / "table.md").read_text()
    title = confusion_title(result).splitlines()
    assert title[0] == f"lulc confusion on the test split of {Path(train_dataset).name} (row-normalised)"
    assert f"model bundle: {sum(map(sum, result.confusion_matrix)):,} px, mIoU {result.report.model.headline:.3f}" \
        in title[1]


@pytest.mark.slow  # about 110 s on 2 cores; tests/train/test_tasks.py checks the stop at the step and the epoch
def test_non_finite_loss_stops_with_the_step(ray_local, train_dataset, tmp_path):
    cfg = _cfg("water", train_dataset, tmp_path, "nan", no_pretrain=True, lr=1e30, clip_grad=0.0, warmup_epochs=0)
    with pytest.raises(TrainingError, match=r"loss became (nan|inf) at epoch \d+, step \d+"):
        run_training(cfg)
    assert json.loads((tmp_path / "nan" / "summary.json").read_text())["status"] == "non-finite"


EPOCHS = 4  # of the stopped run: stopped after the first, resumed to the last


def _launch_in_foreground(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Start ``args`` as a command typed at a terminal: SIGINT at its default. A command started in
    the background by a shell without job control (``pytest ... &``, some CI runners) inherits
    SIGINT ignored, and Python then installs no KeyboardInterrupt handler: the Ctrl-C would be
    lost (what made this test fail in whole-suite runs). Output goes to a file, not a pipe nobody
    reads until the end."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # a caught signal is reset on exec
    try:
        with log.open("w") as out:
            return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, text=True, env=env)
    finally:
        signal.signal(signal.SIGINT, previous)


# slow: 150-190 s on 2 cores, which the default suite (890 s with it, 2026-12-08) cannot spare under its
# 15 minutes; it passes alone and in a pytest started with `&` (SIGINT ignored: the case that failed)
@pytest.mark.slow
def test_stopped_run_resumes_to_the_same_epochs(ray_local, train_dataset, tmp_path):
    """Ctrl-C after epoch 1, then --resume: epochs 2-6 continue the same step count and the same
    learning-rate schedule (against the cosine formula), from the checkpoint, with its moving
    average; the run keeps keep_last checkpoints, none left over from the stopped launch."""
    spec = Path(__file__).resolve().parents[2] / "jobs" / "cpu-demo" / "lulc.toml"
    args = NATIONMAP + ["train", "lulc", "--spec", str(spec), "--data", str(train_dataset), "--out", str(tmp_path),
                        "--name", "stopped", "--epochs", str(EPOCHS), "--batch-size", "4", "--warmup-epochs", "0.5",
                        "--seed", "0", "--no-pretrain", "--ema-decay", "0.9"]
    env = {**os.environ, "RAY_ADDRESS": ""}
    proc = _launch_in_foreground(args, env, tmp_path / "stopped.log")
    run_dir = tmp_path / "stopped"
    _wait_for_epochs(run_dir, 1, proc)
    proc.send_signal(signal.SIGINT)  # an operator's Ctrl-C
    proc.wait(timeout=120)
    done_before = len(_curve_rows(run_dir))
    # (epochs of a few seconds: a loaded machine may finish one or two more before the stop lands)
    assert done_before < EPOCHS, "the run finished before it could be stopped"
    # one line saying how to go on, exit 130 (Ray Train's own SIGINT handler used to exit 1 silently)
    output = (tmp_path / "stopped.log").read_text()
    assert proc.returncode == 130, output[-2000:]
    assert f"interrupted: {run_dir} keeps its epoch checkpoints; `nationmap train lulc --resume {run_dir}`" in output
    assert "Traceback" not in output
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"

    cfg = load_run_config(run_dir)
    resumed = run_training(cfg, resume=True)
    assert resumed.summary["status"] == "finished" and resumed.summary["epochs"] == EPOCHS
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "resumed" and e["epoch"] >= 1 for e in events)
    rows = _curve_rows(run_dir)
    assert [int(r["epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    per_epoch = int(rows[0]["step"])
    assert [int(r["step"]) for r in rows] == [per_epoch * e for e in range(1, EPOCHS + 1)]
    # linear warm-up, then cosine from the peak to min_lr over the remaining steps (timm's schedule)
    warmup, total = round(cfg.warmup_epochs * per_epoch), EPOCHS * per_epoch
    for r in rows:
        t = int(r["step"]) - warmup
        want = cfg.min_lr + 0.5 * (cfg.peak_lr - cfg.min_lr) * (1 + math.cos(math.pi * t / (total - warmup)))
        assert float(r["lr"]) == pytest.approx(want, rel=1e-6)
    assert math.isfinite(resumed.summary["final"]["val_loss"])
    assert len([d for d in run_dir.glob("checkpoint_*") if d.is_dir()]) == 2  # keep_last = 2
    assert (find_checkpoint(run_dir, "last") / "ema.safetensors").exists()


def _kill_cluster(temp_dir: str) -> None:
    """Stop only the processes of the test cluster (``ray stop`` would stop every Ray on the machine)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="ignore")
        except OSError:
            continue
        if temp_dir in cmdline and int(proc.name) != os.getpid():
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # a two-node cluster and two trainings: about 4 min on 2 cores
def test_killed_worker_on_two_nodes_resumes_from_checkpoint(train_dataset, tmp_path):
    temp_dir = f"/tmp/nm-ray-{os.getpid()}"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    ray_bin = str(Path(sys.executable).parent / "ray")
    try:
        subprocess.run([ray_bin, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                        "--include-dashboard=false", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                       check=True, capture_output=True, env=env, timeout=120)
        subprocess.run([ray_bin, "start", f"--address=127.0.0.1:{port}", "--node-ip-address=127.0.0.1", "--num-cpus=2",
                        f"--temp-dir={temp_dir}", "--disable-usage-stats"],
                       check=True, capture_output=True, env=env, timeout=120)
        spec = Path(__file__).resolve().parents[2] / "jobs" / "cpu-demo" / "lulc.toml"
        args = NATIONMAP + ["train", "lulc", "--spec", str(spec), "--data", str(train_dataset), "--out", str(tmp_path),
                            "--name", "ft", "--epochs", "4", "--batch-size", "4", "--workers", "2", "--no-pretrain",
                            "--warmup-epochs", "0.5", "--address", f"127.0.0.1:{port}", "--max-failures", "2",
                            "--placement", "SPREAD"]  # one worker per node
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        run_dir = tmp_path / "ft"
        _wait_for_epochs(run_dir, 1, proc)
        victim = int((run_dir / "workers" / "rank1.pid").read_text())
        os.kill(victim, signal.SIGKILL)
        output, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, output[-3000:]
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "finished" and summary["epochs"] == 4
        events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
        assert any(e["event"] == "resumed" for e in events), output[-3000:]
        assert [int(r["epoch"]) for r in _curve_rows(run_dir)] == [1, 2, 3, 4]
        assert int((run_dir / "workers" / "rank1.pid").read_text()) != victim  # a new worker process
    finally:
        _kill_cluster(temp_dir)
