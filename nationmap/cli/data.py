"""``nationmap data``: synth, catalog, list, prepare, regions."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from nationmap.cli.common import (console, err_console, outcome_code, refuse_existing, replacing, run_guarded,
                                  start_ray)
from nationmap.config import from_dict

app = typer.Typer(help="Readers, catalog, synthetic world and dataset preparation.", no_args_is_help=True)


def _given(**options) -> dict:
    """The options given on the command line: the others take the config's defaults (declared once,
    in SynthConfig / PrepareConfig, which are not imported here so that the CLI starts fast; hence
    no defaults in the help texts either)."""
    return {key: value for key, value in options.items() if value is not None}

ExecutorOpt = typer.Option("ray", help="ray (embedded local Ray, or --address) or serial.")
AddressOpt = typer.Option(None, help="Ray cluster address (default: RAY_ADDRESS or an embedded local Ray).")


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output directory (lulc/, alos2/, synth.json)."),
    region: str = typer.Option("demo", help="Region: demo, japan, cell names, bbox or GeoJSON."),
    months: str = typer.Option("2022-09,2022-10,2022-11", help="Comma-separated YYYY-MM months."),
    seed: int = typer.Option(None, help="Seed; equal seeds give identical files."),
    lulc_pixels_per_degree: int = typer.Option(None, help="LULC tile resolution (JAXA: 12000)."),
    scene_pixel_m: float = typer.Option(None, help="Scene pixel spacing (m)."),
    scene_length_km: float = typer.Option(None, help="Scene along-track length (km)."),
    scene_width_km: float = typer.Option(None, help="Scene swath width (km)."),
    missing_fraction: float = typer.Option(None, help="Share of frames missing in a month."),
    relief_m: float = typer.Option(None, help="Height (m) of the hills and ridges (500; 2500: a steep range with "
                                              "layover and radar shadow)."),
    change_rate: float = typer.Option(None, help="Change events (clearings, construction, solar farms, floods) "
                                                 "per 1,000 km2 and month after the first (0: none; 0.3: of the "
                                                 "order of Japan's land change); listed in changes.parquet."),
    overwrite: bool = typer.Option(False, help="Replace an existing world at OUT."),
    executor: str = ExecutorOpt,
    address: str = AddressOpt,
):
    """Write a synthetic ALOS-2 world: JAXA-like LULC tiles and L2.1 HH scenes (OUT appears whole)."""
    from nationmap.data.months import parse_months
    from nationmap.data.regions import resolve_region
    from nationmap.data.synth import generate

    def go():
        r = resolve_region(region)
        cfg = from_dict(generate.SynthConfig, _given(
            cells=tuple(r.cell_names), months=tuple(str(m) for m in parse_months(months)), seed=seed,
            lulc_pixels_per_degree=lulc_pixels_per_degree, scene_pixel_m=scene_pixel_m,
            scene_length_km=scene_length_km, scene_width_km=scene_width_km,
            missing_fraction=missing_fraction, relief_m=relief_m, change_rate=change_rate), "synth option")
        start_ray(executor, address)
        with replacing(out, overwrite) as stage:
            summary = generate.synthesize(stage, cfg, executor=executor)
        st = summary["statistics"]
        console.print(f"wrote {len(summary['tiles'])} LULC tiles and {st['scenes']} scenes to {out} "
                      f"(HH mean {st['hh_db_mean']:.2f} dB, std {st['hh_db_std']:.2f} dB)")
        if cfg.change_rate > 0:
            ch = summary["changes"]
            console.print(f"{ch['events']} change events (" + ", ".join(f"{n} {k}" for k, n in ch["by_kind"].items())
                          + "); changed LULC pixels by month: "
                          + ", ".join(f"{m} {n:,}" for m, n in ch["changed_pixels_by_month"].items()))

    run_guarded(go)


@app.command()
def catalog(
    raw_dir: Path = typer.Argument(..., help="Directory holding ALOS-2 scenes and/or mosaic tiles."),
    out: Path = typer.Option(None, help="Catalog Parquet file (default: RAW_DIR/catalog.parquet)."),
    units: str = typer.Option(None, help="Declare units of float rasters: db or linear."),
    rebuild: bool = typer.Option(False, help="Re-index every file instead of updating."),
    executor: str = ExecutorOpt,
    address: str = AddressOpt,
):
    """Index acquisitions into a Parquet catalog (incremental: unchanged files are kept)."""
    from nationmap.data.catalog import build_catalog

    def go():
        target = out or raw_dir / "catalog.parquet"
        start_ray(executor, address)
        report = build_catalog(raw_dir, target, units=units, rebuild=rebuild, executor=executor)
        console.print(f"{target}: {report.total} acquisitions ({report.added} added, {report.kept} unchanged, "
                      f"{report.removed} removed, {len(report.failed)} failed)")
        for f in report.failed:
            err_console.print(f"  skipped {f['path']}: {f['reason']}", highlight=False, soft_wrap=True)
        return outcome_code(len(report.failed), report.total)

    code = run_guarded(go)
    if code:
        raise typer.Exit(code)


@app.command("list")
def list_(
    catalog_path: Path = typer.Argument(..., metavar="CATALOG", help="Catalog Parquet file."),
    region: str = typer.Option(None, help="Region filter."),
    month: str = typer.Option(None, help="Month filter (YYYY-MM[,YYYY-MM])."),
    polarisation: str = typer.Option("HH", help="Polarisation filter (empty: all)."),
):
    """List catalogued acquisitions, filtered by region and month."""
    from nationmap.data.catalog import filter_catalog, read_catalog
    from nationmap.data.months import parse_months
    from nationmap.data.regions import resolve_region

    def go():
        df = read_catalog(catalog_path)
        sel = filter_catalog(df, resolve_region(region) if region else None, parse_months(month) if month else None,
                             polarisation=polarisation or None, kind=None)
        table = Table("id", "pol", "datetime (UTC)", "mode", "level", "pass", "crs", "size")
        for r in sel.itertuples():
            table.add_row(r.id, r.polarisation, f"{r.datetime:%Y-%m-%d %H:%M}", str(r.mode), str(r.level),
                          str(r.pass_direction), r.crs if len(r.crs) < 20 else "WKT", f"{r.width}x{r.height}")
        console.print(table)
        console.print(f"{len(sel)} of {len(df)} acquisitions")

    run_guarded(go)


@app.command()
def regions(
    region: str = typer.Argument("japan", help="Region spec to resolve."),
    lulc_dir: Path = typer.Option(None, help="LULC directory: `japan` becomes its tiles."),
):
    """Show the cells of a region."""
    from nationmap.data.regions import resolve_region

    def go():
        r = resolve_region(region, lulc_dir)
        console.print(f"{r.name}: {len(r.cells)} cells, bounds {tuple(round(b, 4) for b in r.bounds)}")
        console.print(" ".join(r.cell_names), soft_wrap=True)

    run_guarded(go)


@app.command()
def prepare(
    catalog_path: Path = typer.Option(..., "--catalog", help="Catalog Parquet file."),
    lulc_dir: Path = typer.Option(..., help="Directory of JAXA LULC tiles LC_*.tif."),
    out: Path = typer.Option(..., help="Output dataset directory."),
    region: str = typer.Option("japan", help="Region: japan, demo, cell names, bbox or GeoJSON."),
    pretrain_months: str = typer.Option("2022-10,2022-11", help="Months for pretraining (image-only patches)."),
    finetune_months: str = typer.Option("2022-09", help="Months for finetuning and evaluation pairs."),
    anchors: int = typer.Option(None, help="Anchors sampled by inverse class frequency."),
    patch_size: int = typer.Option(None, help="Patch side in pixels."),
    split: str = typer.Option(None, help="random (paper) or spatial (blocks with a buffer)."),
    fractions: str = typer.Option(None, help="train,val,test fractions of the finetuning pairs, e.g. 0.65,0.18,0.17."),
    block_deg: float = typer.Option(None, help="Spatial split block size (degrees)."),
    min_valid: float = typer.Option(None, help="Least share of valid pixels in a kept patch."),
    seed: int = typer.Option(None, help="Seed of every random choice."),
    overwrite: bool = typer.Option(False, help="Replace an existing dataset at --out."),
    executor: str = ExecutorOpt,
    address: str = AddressOpt,
):
    """Anchors -> patches + aligned labels -> month split -> train/val/test, with stats."""
    from nationmap.data.months import parse_months
    from nationmap.data.prepare import PrepareConfig, prepare_dataset
    from nationmap.data.regions import resolve_region
    from nationmap.errors import InputError

    def go():
        try:
            fr = None if fractions is None else tuple(float(x) for x in fractions.split(","))
        except ValueError:
            raise InputError(f"fractions {fractions!r}: expected three numbers like 0.65,0.18,0.17") from None
        cfg = from_dict(PrepareConfig, _given(
            pretrain_months=tuple(str(m) for m in parse_months(pretrain_months)) if pretrain_months else (),
            finetune_months=tuple(str(m) for m in parse_months(finetune_months)) if finetune_months else (),
            n_anchors=anchors, patch_size=patch_size, split=split, fractions=fr, block_deg=block_deg,
            min_valid_fraction=min_valid, seed=seed, region=region), "prepare option")
        r = resolve_region(region, lulc_dir if region == "japan" else None)
        refuse_existing(out, overwrite)  # the one overwrite rule; prepare_dataset then replaces atomically
        start_ray(executor, address)
        report = prepare_dataset(catalog_path, lulc_dir, out, cfg, r, overwrite=True, executor=executor)
        p = report["patches"]
        console.print(f"{out}: {p['pretrain']} pretraining patches, {p['train']}/{p['val']}/{p['test']} "
                      f"train/val/test pairs in {report['seconds']:.1f} s")
        for f in report["failed"]:
            err_console.print(f"  scene {f['scene_id']} skipped: {f['reason']}", highlight=False, soft_wrap=True)
        return outcome_code(len(report["failed"]), sum(p.values()))

    code = run_guarded(go)
    if code:
        raise typer.Exit(code)


@app.command()
def info(dataset: Path = typer.Argument(..., help="Prepared dataset directory.")):
    """Summarise a prepared dataset (counts, normalisation, class frequencies)."""
    from nationmap.data.dataset import PreparedDataset

    def go():
        ds = PreparedDataset(dataset)
        m = ds.meta
        console.print_json(json.dumps({k: m[k] for k in ("patches", "scenes", "normalisation")}))
        f = m["class_frequencies"]["train"]["lulc9"]
        table = Table("class", "train pixels", "frequency")
        for name, n, fr in zip(f["names"], f["pixels"], f["frequency"]):
            table.add_row(name, str(n), f"{fr:.4f}")
        console.print(table)

    run_guarded(go)
