"""``nationmap refresh``, ``nationmap runs list|show|logs``, ``nationmap submit``."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import typer

from nationmap.cli.common import (EXIT_FAILED, EXIT_LOCKED, EXIT_PARTIAL, console, err_console, fail, run_guarded,
                                  submit_instead)
from nationmap.devices import parse_auto

runs_app = typer.Typer(help="Run history (training, inference, refresh) from the run records; Ray job logs.",
                       no_args_is_help=True)

DEFAULT_ROOTS = ("runs", "products", "demo-out")


def _whole_line(text: str) -> None:
    """A progress line printed whole: a scheduled job has no terminal width to wrap at."""
    console.print(text, highlight=False, soft_wrap=True)


def refresh(
    region: str = typer.Option(None, help="Region (default: the [infer] region of the spec, e.g. japan)."),
    month: str = typer.Option(None, help="Month to refresh, YYYY-MM (default: the month that just ended)."),
    config: Path = typer.Option(None, help="Refresh spec with a [refresh] table (default: jobs/refresh.toml)."),
    raw_dir: Path = typer.Option(None, help="Where new ALOS-2 files arrive (default: the spec's raw_dir)."),
    out: Path = typer.Option(None, help="Products root (versions go to OUT/REGION/YYYY-MM/vN)."),
    executor: str = typer.Option(None, help="ray or serial."),
    concurrency: int = typer.Option(None, help="Predictor actors."),
    gpus_per_actor: str = typer.Option(None, help="GPUs per predictor actor (auto: 1 where the cluster has GPUs, "
                                                  "else the CPU; 0: CPU)."),
    cpus_per_actor: float = typer.Option(None, help="CPUs per predictor actor."),
    assessment: Path = typer.Option(None, help="A labelled sample of the month's LULC map: publish its accuracy."),
    force: bool = typer.Option(False, "--force", help="Redo the inference even where verified work exists."),
    address: str = typer.Option(None, help="Ray cluster address (with --submit: the job API, http://HEAD:8265)."),
    submit: bool = typer.Option(False, "--submit", help="Run it on the cluster as a Ray Job; print the job id."),
    token_file: Path = typer.Option(None, help="Ray auth token file (default: RAY_AUTH_TOKEN[_PATH], ~/.ray/auth_token)."),
):
    """The monthly job: update the catalog, map the month, publish it as OUT/REGION/YYYY-MM/vN and
    move `latest` when the whole month succeeded. Exit 0 ok, 3 partial, 1 failed, 4 already running."""
    if submit:
        return submit_instead(address, token_file)
    from nationmap.data.months import parse_month
    from nationmap.ops.lock import LockedError
    from nationmap.errors import NationmapError
    from nationmap.infer.config import resolve_infer_config
    from nationmap.ops.refresh import RefreshFailed, RefreshSpec, month_dir, previous_month, run_refresh
    from nationmap.parallel import use_ray_address

    def setup():
        spec = RefreshSpec.load(config)
        if raw_dir is not None:
            spec = RefreshSpec(raw_dir=str(raw_dir), infer=spec.infer)
        overrides = {"region": region, "month": str(parse_month(month) if month else previous_month()),
                     "executor": executor, "concurrency": concurrency,
                     "gpus_per_actor": parse_auto(gpus_per_actor, "gpus-per-actor"),
                     "cpus_per_actor": cpus_per_actor, "out": out and str(out), "assessment": assessment and str(assessment)}
        cfg = resolve_infer_config(spec.infer, overrides)
        month_dir(cfg)  # the region resolves and its directory stays inside the products root
        use_ray_address(address)
        return cfg, spec

    cfg, spec = run_guarded(setup)
    # `ray job stop` and schedulers send SIGTERM: unwind so the record says interrupted
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        record = run_refresh(cfg, spec, force=force, log=_whole_line)
    except LockedError as exc:
        fail(str(exc), EXIT_LOCKED)
    except RefreshFailed as exc:
        fail(f"refresh failed: {exc}", EXIT_FAILED)
    except NationmapError as exc:
        fail(str(exc), exc.exit_code)
    except OSError as exc:  # e.g. a products directory that cannot be written
        fail(f"refresh failed: {exc}", EXIT_FAILED)
    console.print(f"refresh {record.run_id}: {record.status}; {record.published} "
                  f"(latest -> {record.latest or 'none'})", highlight=False, soft_wrap=True)
    for failure in record.failures[:20]:
        console.print(f"failed {failure.what} {failure.id}: {failure.reason}", highlight=False, soft_wrap=True)
    if record.status != "ok":  # partial: published, latest kept (3); anything else failed (1)
        raise typer.Exit(EXIT_PARTIAL if record.status == "partial" else EXIT_FAILED)


def _roots(roots: list[Path] | None) -> list[str]:
    if roots:
        return [str(r) for r in roots]
    from nationmap.config import default_of
    from nationmap.infer.config import InferConfig, load_infer_defaults

    products = run_guarded(lambda: load_infer_defaults(None)).get("out", default_of(InferConfig, "out"))
    return list(dict.fromkeys([*DEFAULT_ROOTS[:1], products, *DEFAULT_ROOTS[1:]]))


_ROOT_HELP = "Where to look for runs (repeatable; default: runs/, the [infer] products root, demo-out/)."


@runs_app.command("list")
def runs_list(
    root: list[Path] = typer.Option(None, "--root", help=_ROOT_HELP),
    kind: str = typer.Option(None, help="Only this kind: train, infer or refresh."),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of a table."),
    address: str = typer.Option(None, help="Also list the Ray Jobs of this cluster's job API (http://HEAD:8265)."),
    token_file: Path = typer.Option(None, help="Ray auth token file."),
):
    """Every training, inference and refresh run: status, start, duration, failures (newest first)."""
    from nationmap.ops.history import discover, format_table

    runs = [r for r in discover(_roots(root)) if not kind or r.kind.startswith(kind)]
    jobs = []
    if address:
        from nationmap.ops.jobs import list_jobs

        jobs = run_guarded(lambda: list_jobs(address=address, token_file=token_file))
    if as_json:
        typer.echo(json.dumps({"runs": [r.to_dict() for r in runs], "ray_jobs": jobs}, indent=1, default=str))
        return
    typer.echo(format_table(runs) if runs else "no runs found under " + ", ".join(_roots(root)))
    if address:
        typer.echo(f"\nRay jobs at {address}:")
        for job in jobs:
            typer.echo(f"{job['job_id']}  {job['status']}  {job['entrypoint']}")


@runs_app.command("show")
def runs_show(
    run_id: str = typer.Argument(..., help="Run id (or a unique prefix), as nationmap runs list shows it."),
    root: list[Path] = typer.Option(None, "--root", help=_ROOT_HELP),
    as_json: bool = typer.Option(False, "--json", help="JSON instead of text."),
):
    """A run's status, times, inputs, outputs, failures and reports."""
    from nationmap.ops.history import find_run, format_run

    run = run_guarded(lambda: find_run(_roots(root), run_id))
    typer.echo(json.dumps(run.to_dict(), indent=1, default=str) if as_json else format_run(run))


@runs_app.command("logs")
def runs_logs(
    run_id: str = typer.Argument(..., help="A Ray job id (nationmap submit prints it) or a refresh run id."),
    address: str = typer.Option(None, help="Job API of the cluster (default RAY_API_SERVER_ADDRESS, "
                                           "http://127.0.0.1:8265)."),
    follow: bool = typer.Option(True, "--follow/--no-follow", help="Follow a Ray job's logs until it ends."),
    root: list[Path] = typer.Option(None, "--root", help=_ROOT_HELP),
    token_file: Path = typer.Option(None, help="Ray auth token file."),
):
    """Print (and follow) the logs of a Ray job, or the log of a local refresh run.
    Exits 0 if the job succeeded; otherwise the command's exit code (3 partial, 4 already running),
    or 1."""
    if run_id.startswith("refresh-"):
        from nationmap.ops.history import find_run, refresh_log

        def read_log() -> str:  # the file beside the record, by the path rule (a link out is refused)
            run = find_run(_roots(root), run_id)
            return refresh_log(run.record).read_text(errors="replace")

        typer.echo(run_guarded(read_log), nl=False)
        return
    from nationmap.ops.jobs import follow as follow_job

    status, code = run_guarded(lambda: follow_job(run_id, address=address, token_file=token_file, follow_logs=follow))
    console.print(f"job {run_id}: {status}" + (f" (exit code {code})" if code else ""), highlight=False)
    if status in ("FAILED", "STOPPED"):
        # the command's own code when Ray reports it: 3 partial, 4 already running, ...
        raise typer.Exit(code if code in (EXIT_PARTIAL, EXIT_LOCKED, 2) else EXIT_FAILED)


def submit(
    jobspec: str = typer.Argument(..., help="Job spec: a TOML file or a name in jobs/ (pretrain, lulc, water, refresh)."),
    args: list[str] = typer.Argument(None, help="More options for the command, after --."),
    address: str = typer.Option(None, help="Job API of the cluster (default RAY_API_SERVER_ADDRESS, "
                                           "http://127.0.0.1:8265)."),
    token_file: Path = typer.Option(None, help="Ray auth token file (default: RAY_AUTH_TOKEN[_PATH], ~/.ray/auth_token)."),
    submission_id: str = typer.Option(None, help="Job id to use (default: Ray picks one)."),
    follow: bool = typer.Option(False, "--follow", help="Follow the job's logs until it ends."),
):
    """Send a job spec to a running Ray cluster as a Ray Job and print its id
    (e.g. nationmap submit refresh -- --region japan --month 2022-09)."""
    from nationmap.ops.jobs import JobSpec
    from nationmap.ops.jobs import submit as submit_job

    def go():
        spec = JobSpec.load(jobspec, args)
        job_id = submit_job(spec.entrypoint, address=address, token_file=token_file, runtime_env=spec.runtime_env,
                            num_cpus=spec.entrypoint_num_cpus, num_gpus=spec.entrypoint_num_gpus,
                            submission_id=submission_id, metadata={"nationmap_spec": str(spec.path)})
        return spec, job_id

    spec, job_id = run_guarded(go)
    typer.echo(job_id)
    err_console.print(f"submitted {spec.path}: {spec.entrypoint}\nfollow it: nationmap runs logs {job_id}",
                      highlight=False, soft_wrap=True)
    if follow:
        runs_logs(job_id, address=address, follow=True, root=None, token_file=token_file)


_BENCHMARKS_HELP = ("Benchmark results to cost the month with: a results.json of python -m benchmarks run on your "
                    "machines (or set NATIONMAP_BENCHMARKS). Default: the reference costs packaged with nationmap, "
                    "measured on the machines they name. The plan prints which it used.")


def plan(
    region: str = typer.Option(..., help="Region: japan, demo, cells, a bbox, or a GeoJSON file."),
    date: str = typer.Option(..., "--date", help="Month, YYYY-MM."),
    config: Path = typer.Option(None, help="Defaults file with an [infer] table (default: jobs/infer.toml)."),
    catalog: Path = typer.Option(None, help="Acquisition catalog (default: the config's; paper numbers without one)."),
    gpus: str = typer.Option("1,8,16,64", help="GPU counts to give the wall time for, comma-separated."),
    gpu: str = typer.Option("H100", help="GPU model, for the estimate when no GPU throughput was measured."),
    throughput: float = typer.Option(None, help="Windows (LULC + water) per second per GPU, if you know it."),
    cpus_per_gpu: int = typer.Option(12, help="CPU cores per GPU for the cell stage."),
    preset: str = typer.Option("swin-b", help="Model preset (its FLOPs, for the estimate)."),
    benchmarks: Path = typer.Option(None, envvar="NATIONMAP_BENCHMARKS", help=_BENCHMARKS_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the plan as JSON (strict: finite numbers only)."),
):
    """Patches, GPU-hours and wall time on N GPUs for a region's month (from the catalog, or the
    paper's numbers), with the throughput measured by the benchmarks."""
    import os

    from nationmap.config import check_types, check_value, default_of
    from nationmap.data.months import parse_month
    from nationmap.errors import InputError
    from nationmap.infer.config import InferConfig, load_infer_defaults

    # a path from the environment is named as such in the plan's "costs from" line
    how = "NATIONMAP_BENCHMARKS" if benchmarks is not None and os.environ.get("NATIONMAP_BENCHMARKS") == str(
        benchmarks) else "--benchmarks"

    def go():
        month = str(parse_month(date))
        # the [infer] table by the configs' rule (types, unknown keys), InferConfig's defaults beneath
        values = check_types(InferConfig, load_infer_defaults(config), InferConfig.WHAT)
        setting = lambda key: values.get(key, default_of(InferConfig, key))  # noqa: E731
        try:
            counts = [int(n) for n in gpus.split(",") if n.strip()]
        except ValueError:
            raise InputError(f"--gpus must be comma-separated integers, not {gpus!r}") from None
        if throughput is not None and check_value(throughput, float, "--throughput") <= 0:  # finite, then > 0
            raise InputError(f"--throughput must be a finite number > 0, not {throughput}")
        if cpus_per_gpu < 1 or not counts or min(counts) < 1:
            raise InputError("--gpus and --cpus-per-gpu must be positive")
        from nationmap.data.regions import resolve_region
        from nationmap.models.presets import get_preset  # torch: after the options are checked
        from nationmap.ops.plan import make_plan, read_measurements

        measured = read_measurements(benchmarks, how)  # a malformed file: one line, before any model is built
        size = get_preset(preset).encoder.img_size
        lulc_dir = setting("lulc_dir") or None  # the japan cell list; the bundled one when absent here
        lulc_dir = lulc_dir if lulc_dir and Path(lulc_dir).is_dir() else None
        return make_plan(resolve_region(region, lulc_dir), month, str(catalog) if catalog else values.get("catalog"),
                         setting("window") or size, setting("overlap"), setting("pixels_per_degree"), preset, counts,
                         throughput, gpu, cpus_per_gpu, measured)

    result = run_guarded(go)
    if as_json:  # strict JSON: the plan holds finite numbers only (make_plan refuses the rest)
        typer.echo(json.dumps(result.to_dict(), indent=1, allow_nan=False))
    else:
        from nationmap.ops.plan import format_plan

        console.print(format_plan(result), highlight=False, soft_wrap=True)
