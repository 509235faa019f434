"""Shared fixtures: real sample files, one local Ray per session, a tiny synthetic world."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

REAL_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"

# The tiny world: two cells on both sides of the UTM zone 53/54 border (138 E), two months.
TINY_CELLS = ("N35E137", "N35E138")
TINY_MONTHS = ("2022-09", "2022-10")
TINY_PATCH = 32


@pytest.fixture(scope="session")
def real_dir() -> Path:
    if not REAL_DIR.is_dir():
        pytest.fail(f"real SAR samples not found at {REAL_DIR}: tests need ../shared/data/real beside the checkout")
    return REAL_DIR


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance (2 CPUs) for the whole test session.

    Worker logs are not forwarded: the CLI tests run in this process, and a late line from a
    Ray Train actor of an earlier test would otherwise land in their captured output.
    """
    import ray

    from nationmap.parallel import init_ray

    init_ray("local", num_cpus=2, log_to_driver=False)  # nationmap's own start: its worker environment too
    yield ray
    ray.shutdown()


def tiny_synth_config(seed: int = 0):
    from nationmap.data.synth.generate import SynthConfig

    return SynthConfig(cells=TINY_CELLS, months=TINY_MONTHS, seed=seed, lulc_pixels_per_degree=600,
                       scene_pixel_m=200.0, scene_length_km=50.0, scene_width_km=45.0, missing_fraction=0.15)


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory) -> Path:
    from nationmap.data.synth.generate import synthesize

    root = tmp_path_factory.mktemp("tiny_world")
    synthesize(root, tiny_synth_config(), executor="serial")
    return root


@pytest.fixture(scope="session")
def tiny_catalog(tiny_world, tmp_path_factory) -> Path:
    from nationmap.data.catalog import build_catalog

    path = tmp_path_factory.mktemp("catalog") / "catalog.parquet"
    build_catalog(tiny_world, path, executor="serial")
    return path


def tiny_prepare_config(**kw):
    from nationmap.data.prepare import PrepareConfig

    args = dict(pretrain_months=("2022-10",), finetune_months=("2022-09",), n_anchors=4000, patch_size=TINY_PATCH, seed=0)
    args.update(kw)
    return PrepareConfig(**args)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_world, tiny_catalog, tmp_path_factory) -> Path:
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region

    out = tmp_path_factory.mktemp("datasets") / "random"
    prepare_dataset(tiny_catalog, tiny_world / "lulc", out, tiny_prepare_config(), resolve_region(",".join(TINY_CELLS)),
                    executor="serial")
    return out


@pytest.fixture(scope="session")
def train_dataset(tiny_world, tiny_catalog, tmp_path_factory) -> Path:
    """The tiny world cut into 64 px patches: big enough for the tiny preset to learn something."""
    from nationmap.data.prepare import prepare_dataset
    from nationmap.data.regions import resolve_region

    out = tmp_path_factory.mktemp("datasets") / "train64"
    prepare_dataset(tiny_catalog, tiny_world / "lulc", out, tiny_prepare_config(patch_size=64, n_anchors=20000),
                    resolve_region(",".join(TINY_CELLS)), executor="serial")
    return out


@pytest.fixture()
def world_copy(tiny_world, tmp_path) -> Path:
    dst = tmp_path / "world"
    shutil.copytree(tiny_world, dst)
    return dst


# Random-weight tiny bundles (64 px input) for both tasks: inference and operations tests.
BUNDLE_INPUT = 64


def make_bundle(root: Path, task: str, seed: int) -> Path:
    from nationmap.train.checkpoint import random_bundle

    return random_bundle(root / task, task, "tiny", BUNDLE_INPUT, seed)


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("bundles")
    return {"lulc": make_bundle(root, "lulc", 0), "water": make_bundle(root, "water", 1)}
