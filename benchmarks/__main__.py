"""``python -m benchmarks [NAME ...]``: run the benchmarks (all, or the named ones), each in a
fresh process, and write ``benchmarks/results.json`` and ``benchmarks/RESULTS.md``.

Results of benchmarks not run this time are kept from the previous run (each carries its own
date, machine and commit), so one benchmark can be re-run alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT, SIZES, WORKDIR, machine, run_child

BENCHMARKS = ("infer_overhead", "infer_memory", "products", "national_layer", "scale", "training", "data_prep", "gpu",
              "quality", "serve", "assess_coverage", "change")
# ratio -> (target, "min" (ratio must be >= target) or "max" (<=), what it means)
TARGETS = {
    ("infer_overhead", "scene_stage_vs_bare"): (0.90, "min", "scene stage throughput / bare forward"),
    ("infer_overhead", "infer_serial_vs_bare"): (0.90, "min", "whole `infer --executor serial` / bare forward"),
    ("infer_overhead", "swin_b_projected_infer_serial_vs_bare"):
        (None, "min", "whole `infer --executor serial` / bare forward, projected for Swin-B (not run)"),
    ("infer_overhead", "infer_ray_vs_bare"): (None, "min", "whole `infer` on Ray (start-up included) / bare forward"),
    ("infer_overhead", "infer_ray_started_vs_bare"): (None, "min", "whole `infer` on a running Ray / bare forward"),
    ("infer_memory", "largest_vs_smallest_scene"): (1.10, "max", "peak RSS, largest / smallest scene"),
    ("products", "write_time_vs_gdal"): (1.00, "max", "product writing time / GDAL COG driver"),
    ("national_layer", "sparse_vs_dense_time"): (1.30, "max", "national layer time, cells spread over Japan's box / packed"),
    ("national_layer", "sparse_vs_dense_bytes"): (1.30, "max", "national COG bytes, cells spread over Japan's box / packed"),
    ("scale", "fixed_vs_gpu_per_acquisition"):
        (0.05, "max", "fixed cost per acquisition / its projected full-resolution GPU time"),
    ("scale", "driver_peak_rss_gib"): (1.0, "max", "driver peak RSS of the national month, GiB"),
    ("scale", "rerun_s"): (15.0, "max", "verified rerun of the completed national month, s"),
    ("training", "ray_train_vs_bare"): (0.95, "min", "Ray Train samples/s / bare PyTorch loop"),
    ("data_prep", "prepare_serial_vs_bare"): (None, "min", "prepare patches/s / bare windowed reads"),
    ("data_prep", "national_prepare_vs_bare"): (None, "min", "national prepare (3 months, Ray) patches/s / bare windowed reads"),
    ("gpu", "inference_fraction_of_peak"): (None, "min", "GPU inference FLOP/s / peak bf16"),
    ("quality", "long_miou_minus_baseline"):
        (0.10, "min", "held-out LULC mIoU, jobs/cpu-long minus the per-pixel baseline (difference, not ratio)"),
    ("quality", "demo_miou_minus_baseline"):
        (0.0, "min", "held-out LULC mIoU, jobs/cpu-demo minus the per-pixel baseline (difference, not ratio)"),
    ("quality", "long_classes_at_iou_0"): (0.0, "max", "training classes mapped at IoU 0 by jobs/cpu-long"),
    ("assess_coverage", "min_class_coverage_n600"):
        (0.93, "min", "95 % intervals holding a class's true area, lowest class, samples of 600 points"),
    ("assess_coverage", "max_class_coverage_n600"):
        (0.97, "max", "95 % intervals holding a class's true area, highest class, samples of 600 points"),
    ("assess_coverage", "min_class_coverage_n2400"):
        (0.93, "min", "95 % intervals holding a class's true area, lowest class, samples of 2,400 points"),
    ("assess_coverage", "max_class_coverage_n2400"):
        (0.97, "max", "95 % intervals holding a class's true area, highest class, samples of 2,400 points"),
    ("assess_coverage", "min_class_coverage_n600_buffers2"):
        (0.93, "min", "the same, lowest class, 600 points with 2 px buffer strata around the rare classes"),
    ("assess_coverage", "min_class_coverage_n2400_buffers2"):
        (0.93, "min", "the same, lowest class, 2,400 points with 2 px buffer strata around the rare classes"),
    ("change", "false_change_raw_vs_rule"):
        (5.0, "min", "false change on stable land of the held-out world, raw monthly difference / change rule"),
    ("change", "recall_rule_vs_raw"):
        (0.8, "min", "recall of true change on the held-out world, change rule / raw monthly difference"),
    ("change", "tuning_false_change_raw_vs_rule"):
        (None, "min", "false change on stable land of the tuning world, raw monthly difference / change rule"),
    ("change", "tuning_recall_rule_vs_raw"):
        (None, "min", "recall of true change on the tuning world, change rule / raw monthly difference"),
}
DEFAULT_RESULTS = ROOT / "benchmarks" / "RESULTS.md"


def _bf16(machine: dict) -> str:
    """Whether the CPU has native bf16 (AMX, AVX512-BF16): CPU training times depend on it."""
    native = machine.get("cpu_bf16")
    if native is None:  # results stored before the probe was recorded
        return "native bf16 not recorded; measured before issue 36"
    return f"native bf16: {native}" if native != "none" else "no native bf16"


def render(results: dict) -> str:
    """RESULTS.md from the stored results (one section per benchmark, summary first)."""
    lines = ["# nationmap benchmarks", "",
             "Written by `python -m benchmarks` (`make bench`); every figure below comes from that command. "
             "Each ratio compares a measurement with its reference measured in the same run, on the same machine, "
             "in the same process or a sibling one. Re-run one benchmark with `python -m benchmarks NAME`.", ""]
    machines = {json.dumps(r["machine"], sort_keys=True) for r in results.values()}
    for i, m in enumerate(json.loads(s) for s in sorted(machines)):
        label = "Machine" if len(machines) == 1 else f"Machine {i + 1}"
        lines += [f"## {label}", "",
                  f"- CPU: {m['cpu']} ({_bf16(m)}), {m['cores']} cores, {m['memory_gib']} GiB; GPU: {m['gpu'] or 'none'}; "
                  f"torch threads {m['torch_threads']}",
                  f"- {m['platform']}, nationmap commit {m['git']}",
                  "- " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    lines += ["## Summary", "", "| benchmark | ratio | value | target |", "|---|---|---|---|"]
    for (name, key), (target, mode, what) in TARGETS.items():
        r = results.get(name)
        if r is None or key not in r["ratios"]:
            continue
        value = r["ratios"][key]
        goal = "-" if target is None else (f">= {target:.2f}" if mode == "min" else f"<= {target:.2f}")
        met = "" if target is None else (" (met)" if (value >= target if mode == "min" else value <= target) else " (not met)")
        lines.append(f"| {name} | {what} | {value:.3f} | {goal}{met} |")
    lines.append("")
    for name in BENCHMARKS:
        r = results.get(name)
        if r is None:
            continue
        lines += [f"## {r['title']}", "",
                  f"`python -m benchmarks {name}` ({r['size']} size), {r['date']}, {r['seconds']:.0f} s, on "
                  f"{r['machine']['cpu']} ({_bf16(r['machine'])}), {r['machine']['cores']} cores.", ""]
        if r["rows"]:
            keys = list(r["rows"][0])
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in r["rows"]]
            lines.append("")
        if r["ratios"]:
            lines.append("Ratios: " + ", ".join(f"{k} = {v:.3f}" for k, v in r["ratios"].items()) + ".")
            lines.append("")
        lines += [f"- {n}" for n in r["notes"]]
        lines.append("")
        if r.get("profile"):
            lines += ["Where the time goes:", "", *[f"- {p}" for p in r["profile"]], ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    ap.add_argument("--size", choices=SIZES, default="full", help="tiny: a smoke run of seconds")
    ap.add_argument("--workdir", type=Path, default=WORKDIR, help="inputs made once and reused")
    ap.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="RESULTS.md to write (results.json beside it)")
    ap.add_argument("--render-only", action="store_true", help="rewrite RESULTS.md from results.json, run nothing")
    args = ap.parse_args(argv)
    if args.render_only:
        store = args.results.with_name("results.json")
        args.results.write_text(render(json.loads(store.read_text())))
        print(f"wrote {args.results} from {store}", file=sys.stderr)
        return 0
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    store = args.results.with_name("results.json")
    results = json.loads(store.read_text()) if store.exists() else {}
    info = machine()
    for name in args.names or BENCHMARKS:
        print(f"[{time.strftime('%H:%M:%S')}] {name} ({args.size}) ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        r = run_child(f"benchmarks.{name}", "--size", args.size, "--workdir", str(args.workdir))
        r.update(seconds=time.perf_counter() - t0, size=args.size, machine=info,
                 date=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        results[name] = r
        print(f"[{time.strftime('%H:%M:%S')}] {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in r["ratios"].items()),
              file=sys.stderr, flush=True)
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text(json.dumps(results, indent=1, default=str))
        args.results.write_text(render(results))
    print(f"wrote {args.results} and {store}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
