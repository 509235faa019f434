"""``python -m benchmarks serve`` runs end to end on a tiny products root (no speed is asserted)."""

from __future__ import annotations

import math

import pytest

from benchmarks import serve


@pytest.mark.slow  # 1 to 5 minutes on 2 shared cores: two servers, each started four times
def test_serve_benchmark_runs_both_servers_and_states_the_targets(tmp_path):
    result = serve.run("tiny", tmp_path)
    assert {row["server"] for row in result.rows} == {f"baseline ({serve.BASELINE_COMMIT})", "this checkout"}
    assert all(math.isfinite(v) and v >= 0 for v in result.ratios.values()), result.ratios
    assert result.ratios["api_maps_max_s_under_hostile"] < 5.0  # the old server's was tens of seconds
    assert result.notes[-1].startswith("This run: tiles ")
    assert all(row["errors"] == 0 for row in result.rows if row["server"] == "this checkout"), result.rows
