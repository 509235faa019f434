"""``nationmap assess``: design a stratified sample of a map, fill its reference from reference
tiles, estimate accuracy and area with 95 % confidence intervals (:mod:`nationmap.assess`)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from nationmap.cli.common import console, run_guarded
from nationmap.errors import InputError

app = typer.Typer(help="Accuracy and area with confidence intervals from a stratified sample "
                       "(Olofsson et al. 2014).", no_args_is_help=True)


def _expected(values: list[str]) -> dict[int, float]:
    out = {}
    for text in values:
        code, _, value = text.partition("=")
        try:
            out[int(code)] = float(value)
        except ValueError:
            raise InputError(f"--expected-ua {text!r}: expected CODE=U, e.g. 7=0.6") from None
        if not 0 <= out[int(code)] <= 1:
            raise InputError(f"--expected-ua {text!r}: a user's accuracy is between 0 and 1")
    return out


@app.command()
def design(
    products: Path = typer.Argument(..., help="A month's products (a run directory or a published version) "
                                              "or a class raster in degrees."),
    out: Path = typer.Option(..., help="Sample to write: OUT.csv, OUT.gpkg and OUT.design.json (never replaced)."),
    n: int = typer.Option(600, "--n", min=2, help="Points in all."),
    allocation: str = typer.Option("proportional", help="proportional, equal, neyman or min-per-class=M."),
    seed: int = typer.Option(None, min=0, help="Seed of the draw (default: a random one, recorded)."),
    product: str = typer.Option("lulc", help="The layer assessed (lulc or water)."),
    target_se: float = typer.Option(0.01, help="Standard error of overall accuracy the size guidance aims at."),
    expected_ua: list[str] = typer.Option([], "--expected-ua", help="Anticipated user's accuracy of a class, "
                                                                   "CODE=U (repeatable; others 0.8)."),
    buffer: list[str] = typer.Option([], "--buffer", help="A stratum of the pixels within PX px of class CODE, "
                                                         "where its omissions are likely: CODE=PX (repeatable)."),
):
    """A stratified random sample of the map's pixels, its classes as strata, for labelling in QGIS."""
    from nationmap.assess.design import Buffer
    from nationmap.assess.protocol import design_sample

    result = run_guarded(lambda: design_sample(products, out, n, allocation, seed, product, target_se,
                                               _expected(expected_ua), buffers=tuple(map(Buffer.parse, buffer))))
    d = result.design
    table = Table("code", "class", "pixels", "km²", "share", "points", title=f"{d.n} points, {d.allocation}, seed {d.seed}")
    total = sum(s.area_km2 for s in d.strata)
    for s in d.strata:
        table.add_row(str(s.code), s.name, f"{s.pixels:,}", f"{s.area_km2:,.2f}", f"{s.area_km2 / total:.4f}", str(s.n))
    console.print(table)
    console.print(f"size guidance: {d.recommended_n} points give a standard error of {d.target_se} on overall "
                  f"accuracy (anticipated user's accuracies {min(d.expected_ua.values()):.2f}-"
                  f"{max(d.expected_ua.values()):.2f}); these {d.n} give about {d.expected_overall_se:.4f}. "
                  "Rare classes: at least 50 points each (--allocation min-per-class=50).", highlight=False)
    for path in result.files:
        console.print(f"wrote {path}", highlight=False)


@app.command()
def reference(
    sample: Path = typer.Argument(..., help="The sample's CSV or GeoPackage (rewritten with the labels)."),
    reference_dir: Path = typer.Option(..., "--reference", help="Directory of reference tiles LC_<cell>.tif "
                                                                 "(JAXA HRLULC, or a synthetic world's lulc/)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace labels already in the sample too."),
):
    """Fill the sample's reference column from reference tiles, where they cover its points."""
    from nationmap.assess.protocol import fill_reference

    result = run_guarded(lambda: fill_reference(sample, reference_dir, overwrite=overwrite))
    console.print(f"{result.path}: {result.labelled} points labelled from the tiles ({result.outside} outside the "
                  f"reference's domain), {result.kept} labels kept, {result.missing} without a reference",
                  highlight=False)


@app.command()
def estimate(
    sample: Path = typer.Argument(..., help="The labelled sample's CSV or GeoPackage."),
    out: Path = typer.Option(None, help="Directory of accuracy.json, accuracy.md and areas_estimated.csv "
                                        "(default: beside the sample)."),
    design_file: Path = typer.Option(None, "--design", help="The design record (default: SAMPLE's .design.json)."),
    drop_unlabelled: bool = typer.Option(False, "--drop-unlabelled", help="Leave unlabelled points out "
                                                                          "(else they are an error)."),
    map_source: Path = typer.Option(None, "--map", help="Assess another map of the same legend (a later month's "
                                                        "products or a raster) with this sample's strata."),
):
    """Overall, user's and producer's accuracy and each class's area, with standard errors and 95 %
    confidence intervals (stratified estimators of Stehman 2014)."""
    from nationmap.assess.protocol import estimate_sample

    result = run_guarded(lambda: estimate_sample(sample, out, design_file, drop_unlabelled, map_source))
    r = result.report
    console.print(f"overall accuracy {_num(r.overall.estimate, 3)} ± {_num(r.overall.ci95, 3)} (95 % CI, {r.points} points)",
                  highlight=False)
    table = Table("class", "map km²", "estimated km²", "± 95 %", "user's", "producer's")
    for c in r.classes:
        table.add_row(c.name, _num(c.mapped_km2, 2), _num(c.area_km2.estimate, 2), _num(c.area_km2.ci95, 2),
                      _num(c.users.estimate, 3), _num(c.producers.estimate, 3))
    if r.points_outside:
        table.add_row(f"outside the reference ({r.points_outside} points)", "", _num(r.outside_km2.estimate, 2),
                      _num(r.outside_km2.ci95, 2), "", "")
    console.print(table)
    for path in result.files:
        console.print(f"wrote {path}", highlight=False)


def _num(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"
