"""``nationmap train pretrain|lulc|water``, ``nationmap export``, ``nationmap eval``, ``nationmap ablate``."""


import inspect
from pathlib import Path

import typer

from nationmap.cli.common import (EXIT_FAILED, console, err_console, fail, refuse_existing, replacing, run_guarded,
                                  submit_instead)
from nationmap.devices import parse_auto

app = typer.Typer(help="Training runs on Ray Train (embedded local Ray, or a cluster with --address).",
                  no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate a model bundle on a prepared dataset split.", no_args_is_help=True)


def _options(
    data: Path = typer.Option(None, help="Prepared dataset directory."),
    spec: str = typer.Option(None, help="Job spec: a TOML path or a name in jobs/ (default: jobs/TASK.toml)."),
    out: Path = typer.Option(None, help="Runs directory (default runs/); the run is OUT/NAME."),
    name: str = typer.Option(None, help="Run name (default TASK-YYYYmmdd-HHMMSS)."),
    preset: str = typer.Option(None, help="Model preset: swin-b, swin-s, swin-t, tiny."),
    epochs: int = typer.Option(None, help="Epochs."),
    batch_size: int = typer.Option(None, help="Global batch size (over all workers)."),
    lr: float = typer.Option(None, help="Base learning rate."),
    warmup_epochs: float = typer.Option(None, help="Warm-up epochs."),
    workers: int = typer.Option(None, help="Ray Train workers."),
    gpus_per_worker: str = typer.Option(None, help="GPUs per worker (auto: 1 where the cluster has GPUs, else "
                                                   "the CPU; 0: CPU)."),
    cpus_per_worker: float = typer.Option(None, help="CPUs reserved per worker."),
    placement: str = typer.Option(None, help="Ray placement of the workers: PACK or SPREAD (one per node)."),
    steps_per_epoch: int = typer.Option(None, help="Cap on steps per epoch (0: the whole split)."),
    init: Path = typer.Option(None, help="Pretrained encoder: a pretraining run, bundle or checkpoint."),
    no_pretrain: bool = typer.Option(False, "--no-pretrain", help="Train from scratch (ablation)."),
    method: str = typer.Option(None, help="Pretraining method: mixmae or simmim."),
    no_sar_weight: bool = typer.Option(False, "--no-sar-weight", help="Plain MixMAE / SimMIM (no backscatter weight)."),
    highres: bool = typer.Option(None, "--highres/--no-highres", help="High-res feature injection."),
    refine_up: bool = typer.Option(None, "--refine-up/--no-refine-up", help="Progressive refine-up head."),
    guide: bool = typer.Option(None, "--guide/--no-guide", help="Image-guided full-resolution refinement of the logits."),
    alpha_scale: float = typer.Option(None, help="Focal class-weight scale (1.0: no alpha-scale)."),
    precision: str = typer.Option(None, help="auto (bf16 where the workers' GPU or CPU runs it natively: "
                                             "AMX or AVX512-BF16; else float32), bf16 or fp32."),
    force_bf16: bool = typer.Option(False, "--force-bf16", help="Run bf16 even where it is emulated (slow)."),
    ema_decay: float = typer.Option(None, help="Moving average of the weights, validated and exported (0: off)."),
    seed: int = typer.Option(None, help="Seed."),
    keep_last: int = typer.Option(None, help="Epoch checkpoints to keep (the best is kept apart)."),
    max_failures: int = typer.Option(None, help="Worker-group restarts from the last checkpoint."),
    resume: Path = typer.Option(None, help="Continue a stopped run: its RUN_DIR (other options ignored but --epochs)."),
    address: str = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS or an embedded local Ray; "
                                           "with --submit: the job API, http://HEAD:8265)."),
    submit: bool = typer.Option(False, "--submit", help="Run it on the cluster as a Ray Job; print the job id."),
    token_file: Path = typer.Option(None, help="Ray auth token file, for --submit."),
):
    return locals()


def _run(task: str, opts: dict) -> None:
    if opts.pop("submit"):
        return submit_instead(opts["address"], opts["token_file"])
    opts.pop("token_file")
    from nationmap.parallel import use_ray_address
    from nationmap.train.config import resolve_config

    def go():
        use_ray_address(opts.pop("address"))
        resume = opts.pop("resume")
        spec = opts.pop("spec")
        if opts.pop("no_sar_weight"):
            opts["sar_weight"] = False
        opts["no_pretrain"] = opts["no_pretrain"] or None  # unset: the job spec decides
        opts["force_bf16"] = opts["force_bf16"] or None
        opts["gpus_per_worker"] = parse_auto(opts["gpus_per_worker"], "gpus-per-worker")
        for key in ("data", "out", "init"):
            if opts[key] is not None:
                opts[key] = str(opts[key])
        if resume is not None:
            from nationmap.train.run import load_run_config

            cfg = load_run_config(resume)
            if cfg.task != task:
                from nationmap.errors import InputError

                raise InputError(f"{resume} is a {cfg.task} run, not {task}")
            if opts["epochs"]:
                cfg = cfg.replace(epochs=opts["epochs"])
            if opts["force_bf16"]:
                cfg = cfg.replace(force_bf16=True)
        else:
            cfg = resolve_config(task, spec, opts)
        from nationmap.train.run import TrainingError, new_run_name, run_training  # torch, Ray: after the checks

        if not cfg.name:
            cfg = cfg.replace(name=new_run_name(task))

        try:
            result = run_training(cfg, resume=resume is not None, log=console.print)
        except TrainingError as exc:  # the run started and failed: not bad input
            fail(str(exc), EXIT_FAILED)
        except KeyboardInterrupt:
            run_dir = Path(cfg.out) / cfg.name
            err_console.print(f"interrupted: {run_dir} keeps its epoch checkpoints; `nationmap train {task} "
                              f"--resume {run_dir}` continues it", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        s = result.summary
        best = s.get("best") or {}
        console.print(f"{task} run {result.run_dir}: {s['status']} after {s['epochs']} epochs in {s['seconds']} s; "
                      f"best {best.get('metric')} {best.get('value', float('nan')):.4f} at epoch {best.get('epoch')}")

    run_guarded(go)


def _register(task: str, doc: str):
    def command(**kwargs):
        _run(task, kwargs)

    command.__doc__ = doc
    command.__signature__ = inspect.signature(_options)
    app.command(task)(command)


_register("pretrain", "Pretrain the encoder (SAR-W-MixMAE by default; jobs/pretrain.toml).")
_register("lulc", "Finetune 9-class LULC segmentation (jobs/lulc.toml).")
_register("water", "Finetune water detection (jobs/water.toml).")


def export(
    run_dir: Path = typer.Argument(..., help="Training run directory."),
    out: Path = typer.Option(..., help="Bundle directory to write."),
    checkpoint: str = typer.Option("best", help="best or last."),
    overwrite: bool = typer.Option(False, help="Replace an existing bundle at --out."),
):
    """Write a self-contained model bundle (safetensors + JSON) from a run's checkpoint."""
    from nationmap.train.checkpoint import find_checkpoint, write_bundle

    def go():
        if checkpoint not in ("best", "last"):
            from nationmap.errors import InputError

            raise InputError("--checkpoint must be best or last")
        refuse_existing(out, overwrite)
        src = find_checkpoint(run_dir, checkpoint)
        write_bundle(out, src)  # staged and renamed into place: the old bundle stays until then
        console.print(f"wrote bundle {out} from {src}")

    run_guarded(go)


def _eval(task: str, model: Path, data: Path, split: str, out: Path | None, overwrite: bool, baseline: Path | None):
    from nationmap.train.evaluate import evaluate

    def go():
        target = out or Path(model) / f"eval-{split}"
        with replacing(target, overwrite) as stage:  # a baseline fitted on the same training split is kept beside
            result = evaluate(model, data, split, stage, task=task, baseline=baseline,
                              fit_baseline_to=None if baseline else stage / "baseline", log=console.print)
        typer.echo(result.table)
        kept = "" if baseline else ", baseline/ (the per-pixel baseline's bundle)"
        console.print(f"wrote {target}/metrics.json, table.md, confusion.png{kept}")

    run_guarded(go)


def _baseline_option():
    return typer.Option(None, help="Per-pixel baseline bundle to score beside the model (default: fit one on "
                                   "DATA's training split and keep it in OUT/baseline).")


@eval_app.command("lulc")
def eval_lulc(
    model: Path = typer.Option(..., help="LULC model bundle."),
    data: Path = typer.Option(..., help="Prepared dataset."),
    split: str = typer.Option("test", help="train, val or test."),
    out: Path = typer.Option(None, help="Output directory (default MODEL/eval-SPLIT)."),
    baseline: Path = _baseline_option(),
    overwrite: bool = typer.Option(False, help="Replace existing results at the output directory."),
):
    """mIoU, mAcc, per-class IoU / accuracy (Table II layout), boundary F-score, thin-water
    recall, confusion matrix; beside the per-pixel baseline and the majority class."""
    _eval("lulc", model, data, split, out, overwrite, baseline)


@eval_app.command("water")
def eval_water(
    model: Path = typer.Option(..., help="Water model bundle."),
    data: Path = typer.Option(..., help="Prepared dataset."),
    split: str = typer.Option("test", help="train, val or test."),
    out: Path = typer.Option(None, help="Output directory (default MODEL/eval-SPLIT)."),
    baseline: Path = _baseline_option(),
    overwrite: bool = typer.Option(False, help="Replace existing results at the output directory."),
):
    """Water IoU, precision, recall (Table III layout), boundary F-score, thin-water recall,
    confusion matrix; beside the per-pixel baseline and the majority class."""
    _eval("water", model, data, split, out, overwrite, baseline)


@eval_app.command("products")
def eval_products(
    run: Path = typer.Argument(..., help="Inference run directory (holds manifest.json)."),
    reference: Path = typer.Option(..., help="Reference LULC tiles (LC_N35E137.tif, ...) on the products' grid."),
    baseline_run: Path = typer.Option(None, help="A run of the same region and month mapped with the per-pixel "
                                                  "baseline's bundles, scored on the same pixels."),
    out: Path = typer.Option(None, help="Where to write agreement.json and agreement.md (default: RUN; a "
                                        "published version is never written into: give another directory)."),
    overwrite: bool = typer.Option(False, help="Replace an existing agreement at the output directory."),
):
    """Agreement of a run's LULC and water maps with reference tiles: per-class IoU, boundary
    F-score, thin-water recall; beside the baseline run and the majority class. Reference codes
    the class table does not know are not scored (counted); a reference with none it knows is
    refused. Writes OUT/agreement.json and OUT/agreement.md."""
    from nationmap.products.agreement import AGREEMENT_FILES, check_destination, map_agreement

    destination = run if out is None else out

    def go():
        check_destination(destination)
        for name in AGREEMENT_FILES:  # the overwrite rule, before any work
            refuse_existing(destination / name, overwrite)
        result = map_agreement(run, reference, baseline_run=baseline_run, out=destination)
        typer.echo(result.table)
        console.print(f"wrote {destination}/agreement.json, {destination}/agreement.md", highlight=False,
                      soft_wrap=True)

    run_guarded(go)


def ablate(
    data: Path = typer.Option(..., help="Prepared dataset."),
    init: Path = typer.Option(..., help="Pretrained encoder (pretraining run or bundle) for the pretrained rows."),
    out: Path = typer.Option(Path("runs/ablation"), help="Output directory: runs, bundles, eval, table.md."),
    spec: str = typer.Option(None, help="LULC job spec (default jobs/lulc.toml)."),
    preset: str = typer.Option(None, help="Model preset."),
    epochs: int = typer.Option(None, help="Epochs per row (the budget)."),
    batch_size: int = typer.Option(None, help="Global batch size."),
    workers: int = typer.Option(None, help="Ray Train workers."),
    gpus_per_worker: str = typer.Option(None, help="GPUs per worker (auto, or a number)."),
    split: str = typer.Option("val", help="Split the rows are scored on (the paper: val)."),
    eval_data: Path = typer.Option(None, help="Dataset the rows are scored on (default DATA), e.g. one prepared "
                                               "from a held-out region."),
    address: str = typer.Option(None, help="Ray cluster address."),
):
    """Run the five rows of the paper's Table I and write the table (mIoU, mAcc, boundary F-score,
    thin-water recall per row, and the per-pixel baseline fitted on DATA's training split)."""
    from nationmap.parallel import use_ray_address
    from nationmap.train.ablate import run_ablation
    from nationmap.train.config import resolve_config

    def go():
        use_ray_address(address)
        overrides = dict(data=str(data), preset=preset, epochs=epochs, batch_size=batch_size, workers=workers,
                         gpus_per_worker=parse_auto(gpus_per_worker, "gpus-per-worker"))
        base = resolve_config("lulc", spec, overrides)
        from nationmap.train.run import TrainingError

        try:
            typer.echo(run_ablation(base, str(init), out, split, None if eval_data is None else str(eval_data)))
        except TrainingError as exc:  # a row's training failed: not bad input
            fail(str(exc), EXIT_FAILED)
        console.print(f"wrote {out}/table.md")

    run_guarded(go)
