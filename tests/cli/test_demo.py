"""``nationmap demo`` stopped by Ctrl-C: one line naming the stage, and a rerun that keeps the
finished steps (issue 36). The stages' own work is replaced by fakes that count their calls: the
real stages are tested in their packages, and the demo itself is measured in the README."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

import nationmap.cli.demo as demo
from tests.reliability.conftest import run_cli


@pytest.fixture()
def fake_stages(monkeypatch):
    """synthesize / build_catalog / prepare_dataset as fakes; ``calls`` counts them and
    ``interrupt`` names the step that raises KeyboardInterrupt (as Ctrl-C does in it)."""
    calls = {"synthesize": 0, "build_catalog": 0, "prepare_dataset": 0}
    interrupt = set()

    def step(name, result):
        def fake(*args, **kwargs):
            calls[name] += 1
            if name in interrupt:
                raise KeyboardInterrupt
            if name == "synthesize":
                args[0].mkdir(parents=True, exist_ok=True)
                (args[0] / "synth.json").write_text(json.dumps(result))
            return result
        monkeypatch.setattr(demo, name, fake)

    step("synthesize", {"tiles": [], "statistics": {"scenes": 3, "hh_db_mean": -9.0, "hh_db_std": 4.0}})
    step("build_catalog", SimpleNamespace(total=3, failed=[]))
    step("prepare_dataset", {"patches": {"pretrain": 8, "train": 4, "val": 2, "test": 2}, "failed": []})
    return SimpleNamespace(calls=calls, interrupt=interrupt)


def test_ctrl_c_names_the_stage_and_a_rerun_resumes_after_the_finished_steps(tmp_path, fake_stages):
    out = tmp_path / "my demo"
    fake_stages.interrupt.add("prepare_dataset")
    first = run_cli(["demo", "--out", out, "--data-only", "--executor", "serial"])
    assert first.code == 130, first.output
    lines = [line for line in first.output.splitlines() if line.startswith("interrupted")]
    assert lines == [f"interrupted in stage 3/8 dataset preparation (demo region only); the finished steps are "
                     f"kept in {out}: `nationmap demo --out '{out}' --data-only` resumes from there"], first.output
    assert "Traceback" not in first.output
    assert fake_stages.calls["synthesize"] == 2  # the demo region and the held-out region

    fake_stages.interrupt.clear()
    second = run_cli(["demo", "--out", out, "--data-only", "--executor", "serial"])
    assert second.code == 0, second.output
    assert fake_stages.calls["synthesize"] == 2  # the world was kept
    assert fake_stages.calls["prepare_dataset"] == 2  # the interrupted step ran again
    assert "finished in an earlier run of the demo, kept" in second.output
    assert json.loads((out / "demo.json").read_text())["done"] == {"world": 0, "dataset": 0}


def test_another_seed_or_version_starts_over(tmp_path):
    state = demo.DemoState(tmp_path, seed=0)
    state.mark("world")
    assert demo.DemoState(tmp_path, seed=0).finished("world")
    assert not demo.DemoState(tmp_path, seed=1).finished("world")
    record = json.loads((tmp_path / "demo.json").read_text())
    (tmp_path / "demo.json").write_text(json.dumps({**record, "nationmap": "0.0.0"}))
    assert not demo.DemoState(tmp_path, seed=0).finished("world")
    (tmp_path / "demo.json").write_text("{not json")
    assert not demo.DemoState(tmp_path, seed=0).finished("world")  # damaged: start over, no crash


def test_a_stopped_training_resumes_only_when_this_demo_started_it(tmp_path, monkeypatch):
    from nationmap.train.config import resolve_config

    launched = []

    def fake_training(cfg, resume=False, log=print):
        launched.append((cfg.name, resume))
        return SimpleNamespace(run_dir=tmp_path / "runs" / cfg.name, summary={
            "status": "finished", "epochs": cfg.epochs, "seconds": 1.0, "best": {"metric": "val_miou", "value": 0.5}})

    monkeypatch.setattr("nationmap.train.run.run_training", fake_training)
    run_dir = tmp_path / "runs" / "lulc"

    def stopped_run():  # what Ctrl-C after an epoch checkpoint leaves
        run_dir.mkdir(parents=True, exist_ok=True)
        resolve_config("lulc", "cpu-demo/lulc", {"data": "d", "out": str(tmp_path / "runs"), "name": "lulc",
                                                 "no_pretrain": True}).write(run_dir / "config.json")
        (run_dir / "checkpoint_manager_snapshot.json").write_text("{}")

    seed0 = demo.DemoState(tmp_path, seed=0)
    stopped_run()
    demo._train("lulc", tmp_path / "d", tmp_path / "runs", None, seed0)  # not started by this demo: anew
    assert launched[-1] == ("lulc", False) and not (run_dir / "checkpoint_manager_snapshot.json").exists()
    stopped_run()
    seed0.done.pop("lulc")  # started, stopped before it finished
    seed0._write()
    demo._train("lulc", tmp_path / "d", tmp_path / "runs", None, demo.DemoState(tmp_path, seed=0))
    assert launched[-1] == ("lulc", True)
    stopped_run()
    seed1 = demo.DemoState(tmp_path, seed=1)  # another seed: another world, never the old run
    demo._train("lulc", tmp_path / "d", tmp_path / "runs", None, seed1)
    assert launched[-1] == ("lulc", False)
    stopped_run()
    seed1.done.pop("lulc")
    seed1._write()
    (run_dir / "config.json").write_text('{"task": "lulc", "epochs": "many"}')  # no longer reads
    demo._train("lulc", tmp_path / "d", tmp_path / "runs", None, demo.DemoState(tmp_path, seed=1))
    assert launched[-1] == ("lulc", False)
