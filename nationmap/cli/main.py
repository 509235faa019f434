"""The ``nationmap`` command line (Typer). Thin: parse, call the core, report.

Bad input (missing path, unknown region, malformed month, invalid option) exits with code 2
and one line on stderr, never a traceback; so do read-only or full disks (code 1), through the
guarded top-level group (:class:`~nationmap.cli.common.GuardedGroup`).
"""

from __future__ import annotations

import sys

import typer

from nationmap import __version__
from nationmap.cli import assess as assess_cli
from nationmap.cli import data as data_cli
from nationmap.cli import infer as infer_cli
from nationmap.cli import models as models_cli
from nationmap.cli import ops as ops_cli
from nationmap.cli import serve as serve_cli
from nationmap.cli import train as train_cli
from nationmap.cli import verify as verify_cli
from nationmap.cli.common import GuardedGroup, err_console, run_guarded

app = typer.Typer(
    name="nationmap",
    help="National LULC and water maps of Japan from ALOS-2 L-band SAR.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=GuardedGroup,
    # plain help text for every command and group below (Typer passes the mode down): with Rich
    # markup, a word such as "[infer]" in a help string is read as a style tag and vanishes
    rich_markup_mode=None,
)
app.add_typer(data_cli.app, name="data")
app.add_typer(models_cli.app, name="models")
app.add_typer(train_cli.app, name="train")
app.add_typer(train_cli.eval_app, name="eval")
app.command("export")(train_cli.export)
app.command("ablate")(train_cli.ablate)
app.command("infer")(infer_cli.infer)
app.command("refresh")(ops_cli.refresh)
app.command("submit")(ops_cli.submit)
app.command("plan")(ops_cli.plan)
app.add_typer(ops_cli.runs_app, name="runs")
app.command("serve")(serve_cli.serve)
app.command("verify")(verify_cli.verify)
app.add_typer(assess_cli.app, name="assess")


def _version(value: bool):
    if value:
        typer.echo(f"nationmap {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
          verbose: bool = typer.Option(False, "--verbose", help="Show Ray's own logs and worker output on the terminal "
                                                                "too (they always go to the run's logs/).")):
    """nationmap: ALOS-2 SAR -> national LULC and water maps."""
    if verbose:
        from nationmap.logs import set_verbose

        set_verbose(True)


@app.command()
def demo(
    out: str = typer.Option("demo-out", help="Output directory of the demo."),
    seed: int = typer.Option(0, help="Seed of the synthetic world."),
    executor: str = typer.Option("ray", help="ray (embedded local Ray) or serial (data stages only)."),
    address: str = typer.Option(None, help="Ray cluster address (default: embedded local Ray)."),
    data_only: bool = typer.Option(False, "--data-only", help="Stop after the dataset (no training or inference)."),
):
    """The whole mission on the embedded default, tiny preset: synthetic world -> catalog -> dataset ->
    pretraining -> LULC and water finetuning -> per-pixel baselines -> inference of a held-out region ->
    products, and their agreement with the truth there beside the baseline's and the majority class's."""
    from nationmap.cli.demo import run_demo

    code = run_guarded(lambda: run_demo(out, seed, executor, address, data_only))
    if code:
        raise typer.Exit(code)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
