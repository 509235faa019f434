"""``nationmap models``: presets, parameters and forward FLOPs."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from nationmap.cli.common import console, fail, run_guarded

app = typer.Typer(help="Model presets, sizes and cost.", no_args_is_help=True)


@app.command("list")
def list_presets():
    """List the model presets."""
    from nationmap.models.presets import PRESETS

    table = Table("preset", "C", "depths", "heads", "window", "UPerNet ch", "description")
    for p in PRESETS.values():
        e = p.encoder
        table.add_row(p.name, str(e.embed_dim), "/".join(map(str, e.depths)), "/".join(map(str, e.num_heads)),
                      str(e.window_size), str(p.decoder_channels), p.description)
    console.print(table)


@app.command()
def info(
    preset: str = typer.Argument(..., help="Preset name (see `nationmap models list`) or 'all'."),
    head: list[str] = typer.Option(None, "--head", help="Limit to these heads (repeatable); default: all."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
):
    """Parameters and forward FLOPs per 256 x 256 patch, for each head of a preset.

    FLOPs count 2 per multiply-add (matmuls, convolutions, attention), measured on the meta device.
    """
    from nationmap.models.info import HEADS, model_cost
    from nationmap.models.presets import PRESETS, get_preset

    def go():
        presets = list(PRESETS) if preset == "all" else [get_preset(preset).name]
        heads = head or list(HEADS)
        unknown = [h for h in heads if h not in HEADS]
        if unknown:
            fail(f"unknown head {unknown[0]!r} (choose from {', '.join(HEADS)})")
        costs = [model_cost(p, h) for p in presets for h in heads]
        if as_json:
            console.print_json(json.dumps([c.to_dict() for c in costs]))
            return
        table = Table("preset", "head", "params (M)", "GFLOPs / patch", "description",
                      title=f"forward cost per {costs[0].img_size} x {costs[0].img_size} x 1 patch")
        for c in costs:
            table.add_row(c.preset, c.head, f"{c.parameters / 1e6:.2f}", f"{c.flops_per_patch / 1e9:.2f}", c.description)
        console.print(table)

    run_guarded(go)
