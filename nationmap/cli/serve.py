"""``nationmap serve``: the web map of a products root (thin: the app is :mod:`nationmap.serve.app`)."""

from __future__ import annotations

from pathlib import Path

import typer

from nationmap.cli.common import console, run_guarded


def serve(
    root: Path = typer.Argument(Path("products"), help="Products root: published months or inference runs."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
    port: int = typer.Option(8000, help="Port to listen on."),
):
    """Serve the products as a web map: every month and version, lulc/water/confidence/count
    tiles over the 1-degree cells, legend, area table, pixel values on click. Read-only."""
    import uvicorn

    from nationmap.errors import InputError
    from nationmap.serve.app import create_app

    def build():
        app = create_app(root)
        if not app.state.server.maps:
            raise InputError(f"{root}: no products run (a manifest.json with national COGs) under it")
        return app

    app = run_guarded(build)
    console.print(f"nationmap serve: {len(app.state.server.maps)} map(s) of {root} at http://{host}:{port}/ "
                  "(Ctrl-C stops)", highlight=False, soft_wrap=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
