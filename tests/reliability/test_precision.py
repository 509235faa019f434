"""Red team of the training precision (issue 36): an explicit bf16 on a CPU that would emulate it
(10-18x float32's time per step) is refused before any work, in one line, leaving no run behind."""

from __future__ import annotations

import pytest
import torch

from nationmap.files import JOBS_DIR
from tests.reliability.conftest import assert_refused, run_cli

pytestmark = pytest.mark.ray


def test_explicit_bf16_on_a_cpu_without_it_is_refused_and_leaves_no_run(ray_local, train_dataset, guarded,
                                                                           monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)  # an AVX2-only CPU
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    guarded.snapshot()
    args = ["train", "lulc", "--data", train_dataset, "--spec", JOBS_DIR / "cpu-demo" / "lulc.toml", "--no-pretrain",
            "--out", guarded.out, "--name", "bf16", "--epochs", "1", "--batch-size", "4", "--precision", "bf16"]
    assert_refused(run_cli(args), 2, "precision bf16 on CPU", "no native bf16", "use precision auto or fp32",
                   "--force-bf16")
    assert not (guarded.out / "bf16").exists()  # a rerun needs no --resume
    guarded.check()


def test_workers_on_other_nodes_are_probed_where_they_run(ray_local, monkeypatch):
    """Each node that can host a worker is probed by a task pinned to it (here: the one local node,
    seen as remote); a node without native bf16 decides for the whole run."""
    from nationmap.devices import choose_precision, probe_bf16
    from nationmap.train.run import workers_bf16

    monkeypatch.setattr(ray_local.util, "get_node_ip_address", lambda: "192.0.2.1")  # the driver elsewhere
    probed = workers_bf16(0.0, 1.0)
    assert probed == probe_bf16("cpu")  # what the node's own process found
    assert choose_precision("auto", probed).chosen == ("bf16" if probed.native else "fp32")
