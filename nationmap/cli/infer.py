"""``nationmap infer``: a region's month of acquisitions -> per-cell COGs, mosaics, STAC."""

from __future__ import annotations

from pathlib import Path

import typer

from nationmap.cli.common import EXIT_FAILED, EXIT_PARTIAL, console, run_guarded, submit_instead



def infer(
    region: str = typer.Option(..., help="Region: japan, demo, cells N35E137,N36E138, a bbox, or a GeoJSON file."),
    date: str = typer.Option(..., "--date", help="Month to map, YYYY-MM."),
    config: Path = typer.Option(None, help="Defaults file with an [infer] table (default: jobs/infer.toml)."),
    catalog: Path = typer.Option(None, help="Acquisition catalog (nationmap data catalog)."),
    lulc_model: Path = typer.Option(None, help="LULC model bundle (nationmap export)."),
    water_model: Path = typer.Option(None, help="Water model bundle (nationmap export)."),
    out: Path = typer.Option(None, help="Products root; the run writes OUT/REGION/YYYY-MM/."),
    lulc_dir: Path = typer.Option(None, help="LULC tiles directory (the japan region's cell list)."),
    pixels_per_degree: int = typer.Option(None, help="National grid resolution (12000: about 10 m)."),
    batch_size: str = typer.Option(None, help="Windows per forward pass (auto: 32 on a GPU, 8 on a CPU)."),
    overlap: int = typer.Option(None, help="Overlap of neighbouring windows, px."),
    blend: str = typer.Option(None, help="Blending of overlapping windows: cosine or none."),
    tta: str = typer.Option(None, help="Test-time augmentation: none, flips (4 passes) or d4 (8 passes)."),
    concurrency: int = typer.Option(None, help="Predictor actors (0: one per GPU, or per cpus-per-actor CPUs)."),
    gpus_per_actor: str = typer.Option(None, help="GPUs per predictor actor (auto: 1 where the cluster has GPUs, "
                                                  "else the CPU; 0: CPU)."),
    cpus_per_actor: float = typer.Option(None, help="CPUs per predictor actor (also its torch threads)."),
    executor: str = typer.Option(None, help="ray (Ray Data and tasks) or serial (in-process)."),
    keep_scenes: bool = typer.Option(None, "--keep-scenes/--no-keep-scenes", help="Keep the scene-grid probability rasters."),
    compile: bool = typer.Option(None, "--compile/--no-compile", help="torch.compile the models (GPU: faster after a warm-up)."),
    probabilities: bool = typer.Option(None, "--probabilities/--no-probabilities",
                                       help="Also publish the LULC class probabilities (one uint8 band per class)."),
    min_count: int = typer.Option(None, help="Acquisitions a pixel needs to get a class (fewer: reason 'low coverage')."),
    dem: Path = typer.Option(None, help="DEM (heights in m, any GDAL raster) for the layover/shadow mask of "
                                        "acquisitions that have none of their own."),
    assessment: Path = typer.Option(None, help="A labelled sample of this LULC map (nationmap assess): publish its accuracy."),
    force: bool = typer.Option(False, "--force", help="Redo everything, even work already done and verified."),
    address: str = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS or an embedded local Ray; "
                                           "with --submit: the job API, http://HEAD:8265)."),
    submit: bool = typer.Option(False, "--submit", help="Run it on the cluster as a Ray Job; print the job id."),
    token_file: Path = typer.Option(None, help="Ray auth token file, for --submit."),
):
    """Map every acquisition of a month in a region: COGs per cell of every declared product (class
    probabilities too with --probabilities), national layers, area tables (accuracy with
    --assessment), STAC and quicklooks, with a run manifest. Reruns skip verified work."""
    if submit:
        return submit_instead(address, token_file)
    from nationmap.infer.config import resolve_infer_config
    from nationmap.infer.pipeline import run_inference, summarize
    from nationmap.parallel import use_ray_address

    def go():
        from nationmap.devices import parse_auto

        overrides = {"region": region, "month": date, "batch_size": parse_auto(batch_size, "batch-size", integer=True), "overlap": overlap, "blend": blend, "tta": tta,
                     "concurrency": concurrency, "gpus_per_actor": parse_auto(gpus_per_actor, "gpus-per-actor"),
                     "cpus_per_actor": cpus_per_actor, "executor": executor, "keep_scenes": keep_scenes, "compile": compile, "pixels_per_degree": pixels_per_degree,
                     "probabilities": probabilities, "min_count": min_count}
        overrides |= {key: None if value is None else str(value) for key, value in (
            ("catalog", catalog), ("lulc_model", lulc_model), ("water_model", water_model), ("out", out),
            ("lulc_dir", lulc_dir), ("dem", dem), ("assessment", assessment))}
        cfg = resolve_infer_config(config, overrides)
        use_ray_address(address)
        return run_inference(cfg, force=force, log=console.print)

    manifest = run_guarded(go)
    console.print(summarize(manifest), highlight=False, soft_wrap=True)
    if manifest.status != "ok":  # failed: nothing could be produced (1); partial: some units failed (3)
        raise typer.Exit(EXIT_PARTIAL if manifest.status == "partial" else EXIT_FAILED)
