#!/usr/bin/env bash
# Create .venv and install nationmap: `scripts/setup.sh` for the demo and the CLI, `scripts/setup.sh
# --test` for the tests too (pytest and friends, and the Debian programs the tests drive).
# Idempotent: a stamp file keyed on pyproject.toml, this script and the kind of setup makes a
# second run a no-op.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3.11}
KIND=run
[ "${1:-}" = "--test" ] && KIND=test
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
# The standard (CUDA-enabled) torch/torchvision pair from the package index: the CPU-only torch
# wheel preinstalled on some machines breaks torchvision::nms, which timm imports.
TORCH_PAIR="torch==2.14.1 torchvision==0.29.2"
if [ "$KIND" = test ]; then
    # Debian programs the tests drive as a GIS user would: gdal-bin's gdalinfo reads the products,
    # Chromium (driven by Playwright) opens the web map of `nationmap serve`. The demo needs neither.
    missing=""
    command -v gdalinfo >/dev/null 2>&1 || missing="$missing gdal-bin"
    command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
    if [ -n "$missing" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "installing Debian packages for the tests:$missing" >&2
            apt-get install -y -q $missing >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $missing >/dev/null; }
        else
            echo "warning: the tests need Debian's$missing (as root: apt-get install$missing)" >&2
        fi
    fi
fi
stamp="$VENV/.nationmap-installed"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
# a test setup holds everything a run setup does: either stamp satisfies `run`
if [ -f "$stamp" ] && { [ "$(cat "$stamp")" = "$want test" ] || [ "$(cat "$stamp")" = "$want $KIND" ]; }; then
    exit 0
fi
echo "setting up $VENV (first run downloads several GB: torch, ray, GDAL wheels)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
if ! "$VENV/bin/python" -m uv --version >/dev/null 2>&1; then
    # a venv made by uv has no pip: bootstrap it first
    "$VENV/bin/python" -m pip --version >/dev/null 2>&1 || "$VENV/bin/python" -m ensurepip >/dev/null
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check uv
fi
target="."
[ "$KIND" = test ] && target=".[test]"
# uv resolves against the package index only (not the local CPU wheel folder).
"$VENV/bin/python" -m uv pip install -q --python "$VENV/bin/python" $TORCH_PAIR -e "$target"
if [ "$KIND" = test ]; then
    # lulc-validation: an independent implementation of Stehman (2014), the oracle of
    # tests/assess. Its code imports pandas only; its declared geopandas, fiona and rtree are not
    # needed and not installed.
    "$VENV/bin/python" -m uv pip install -q --python "$VENV/bin/python" --no-deps "lulc-validation==0.0.4"
fi
"$VENV/bin/python" -c "import torchvision.ops, timm, ray, rasterio" >/dev/null
echo "$want $KIND" > "$stamp"
