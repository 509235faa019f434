"""Derive the reference costs packaged with nationmap (nationmap/ops/reference_costs.json).

`nationmap plan` costs a month from benchmark measurements. So that it gives the same answer from
any working directory, the parts of the checkout's `benchmarks/results.json` it reads are
packaged with the code, each benchmark with the date and machine (CPU, cores, GPU, commit) it was
measured on. Run after `python -m benchmarks` updates the results:

    python scripts/make_reference_costs.py

`tests/reliability/test_plan_faults.py` checks that the packaged file is what this script takes
from the current results.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nationmap.ops.plan import REFERENCE_COSTS, reference_costs  # noqa: E402


def main() -> None:
    results = json.loads((ROOT / "benchmarks" / "results.json").read_text())
    REFERENCE_COSTS.write_text(json.dumps(reference_costs(results), indent=1, sort_keys=True) + "\n")
    print(f"wrote {REFERENCE_COSTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
