"""``nationmap serve``: the web map of a products root (thin: the app is :mod:`nationmap.serve.app`).

The address is checked and bound here, before uvicorn starts, so a bad ``--host`` or ``--port``
is one line of bad input (exit 2) and a port already in use one line and exit 1 (the server could
not start), never uvicorn's traceback; uvicorn then serves on the socket bound here.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import typer

from nationmap.cli.common import console, fail, run_guarded
from nationmap.errors import FailedError, InputError

GDAL_CACHE_MB = "64"  # GDAL's block cache, shared by every thread's datasets (its default: 5 % of the memory)
GRACEFUL_S = 5  # on Ctrl-C or SIGTERM, requests in flight get this long to finish


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (``host``, ``port``): InputError for an address that does not resolve,
    FailedError when it cannot be bound (in use, not allowed)."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise InputError(f"--host {host!r} is not an address of this machine ({getattr(exc, 'strerror', exc)})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        sock.bind(address)
        sock.listen(2048)  # uvicorn's backlog: connections wait from now on, none is refused
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise FailedError(f"cannot listen on {host}:{port}: the port is in use (another server?); "
                              "choose another with --port") from None
        raise FailedError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def serve(
    root: Path = typer.Argument(Path("products"), help="Products root: published months or inference runs."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only; "
                                               "0.0.0.0: every interface)."),
    port: int = typer.Option(8000, help="Port to listen on (1..65535)."),
):
    """Serve the products as a web map: every month and version, lulc/water/confidence/count
    tiles over the 1-degree cells, legend, area table, pixel values on click. Read-only."""
    if not host.strip():
        fail("--host is empty: give the address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)")
    if not 1 <= port <= 65535:
        fail(f"--port {port} is not a port number (1..65535)")
    import uvicorn

    os.environ.setdefault("GDAL_CACHEMAX", GDAL_CACHE_MB)
    from nationmap.serve.app import create_app

    def build():
        app = create_app(root)
        if not app.state.server.maps:
            raise InputError(f"{root}: no products run (a manifest.json with national COGs) under it")
        return app

    sock = run_guarded(lambda: listening_socket(host, port))  # first: a port in use is known at once
    app = run_guarded(build)
    maps = app.state.server.maps.values()
    unavailable = sum(not m.available for m in maps)
    shown = f"[{host}]" if ":" in host else host
    console.print(f"nationmap serve: {len(maps)} map(s) of {root}"
                  + (f" ({unavailable} unavailable: see /api/maps)" if unavailable else "")
                  + f" at http://{shown}:{port}/ (Ctrl-C stops)", highlight=False, soft_wrap=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=GRACEFUL_S))
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn raises the Ctrl-C again once it has stopped: a normal stop
        pass
