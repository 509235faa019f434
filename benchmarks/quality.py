"""Map quality on land and a world the models never saw, beside the per-pixel baseline.

Training data: a named region of the demo's world (seed 0), pretraining on Oct-Nov 2022 and
finetuning on Sep 2022 as the demo; each recipe trains on its own region (``RECIPE_REGIONS``:
jobs/cpu-demo on the demo's 4 cells, jobs/cpu-long on the 12 cells of ``demo-wide``). Held-out:
the ``demo-heldout`` cells of a world generated with ``HELDOUT_SEED``, a seed no test or demo
world uses (other land cover, other scenes), mapped for Sep 2022. Each CPU recipe
(``jobs/<recipe>/``: pretraining when the recipe has a ``pretrain.toml``, LULC and water
finetuning) trains its models, maps the held-out
region, and is scored against the held-out world's LULC tiles by
:func:`nationmap.products.agreement.map_agreement` on the same pixels as the per-pixel baseline
fitted on the same training split (gradient-boosted trees, mapped by the same pipeline) and the
majority class. The figures: LULC mIoU, per-class IoU, boundary F-score (2 px), thin-water
recall, water IoU, the classes of the training split mapped with IoU 0, and the wall time of
each recipe's training. A recipe's trained models are kept in the work directory and reused by
the next run while its job specs, the training code (``TRAINING_CODE``) and its dataset are
unchanged (the notes say at which commit they were trained); anything else is redone.

``tiny`` (the test suite's smoke run) trains 1 epoch on a small world; ``full`` writes the
figures of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks.common import ROOT, Result, fmt, git_commit, main
from nationmap.files import JOBS_DIR

if TYPE_CHECKING:
    from nationmap.metrics import MethodScores

HELDOUT_SEED = 20261  # the held-out world: no test (0, 1) or demo (0) world has this seed
MONTH = "2022-09"
FULL_RECIPES = ("cpu-demo", "cpu-long")  # the recipes the full size trains, each from jobs/<recipe>/
RECIPE_REGIONS = {"cpu-demo": "demo", "cpu-long": "demo-wide"}  # the land each recipe trains on
TINY_TRAIN_CELLS, TINY_HELDOUT_CELLS = ("N35E137",), ("N35E140",)
# The code a recipe's trained models depend on: a change to any file here retrains the recipes.
TRAINING_CODE = ("nationmap/train", "nationmap/models", "nationmap/losses", "nationmap/data")


def _synth(root: Path, cells, months, seed: int, size: str) -> tuple[Path, Path]:
    """World and catalog at ``root`` (reused when complete); returns (raw dir, catalog)."""
    from nationmap.data.catalog import build_catalog
    from nationmap.data.synth.generate import SynthConfig, synthesize

    raw, catalog = root / "raw", root / "catalog.parquet"
    if not catalog.exists():
        shutil.rmtree(root, ignore_errors=True)
        small = dict(lulc_pixels_per_degree=600, scene_pixel_m=150.0) if size == "tiny" else {}
        synthesize(raw, SynthConfig(cells=tuple(cells), months=tuple(months), seed=seed, **small), executor="serial")
        build_catalog(raw, catalog, executor="serial")
    return raw, catalog


def training_data(workdir: Path, size: str, region: str = "demo") -> tuple[Path, Path]:
    """The prepared dataset of a named region of the demo's world (seed 0): pretraining on Oct-Nov
    2022, finetuning on Sep 2022, as the demo (tiny: one cell, 64 px patches); (raw dir, dataset)."""
    from nationmap.data.prepare import PrepareConfig, prepare_dataset
    from nationmap.data.regions import NAMED_CELL_REGIONS, resolve_region

    cells = TINY_TRAIN_CELLS if size == "tiny" else NAMED_CELL_REGIONS[region]
    root = workdir / f"train-world-{size}-{region}"
    raw, catalog = _synth(root, cells, ("2022-09", "2022-10", "2022-11"), 0, size)
    dataset = root / "dataset"
    if not (dataset / "dataset.json").exists():
        cfg = PrepareConfig(pretrain_months=("2022-10", "2022-11"), finetune_months=(MONTH,), seed=0,
                            n_anchors=200_000 if size == "full" else 4000, patch_size=256 if size == "full" else 64)
        prepare_dataset(catalog, raw / "lulc", dataset, cfg, resolve_region(",".join(cells)), overwrite=True,
                        executor="serial")
    return raw, dataset


def heldout_world(workdir: Path, size: str) -> tuple[Path, Path, str]:
    """The held-out world (seed ``HELDOUT_SEED``), map month only; (raw dir, catalog, region)."""
    from nationmap.data.regions import DEMO_HELDOUT_CELLS

    cells = TINY_HELDOUT_CELLS if size == "tiny" else DEMO_HELDOUT_CELLS
    raw, catalog = _synth(workdir / f"heldout-world-{size}", cells, (MONTH,), HELDOUT_SEED, size)
    return raw, catalog, ",".join(cells)


def _train_recipe(recipe: str, dataset: Path, out: Path, size: str) -> TrainedRecipe:
    """Pretraining (when ``jobs/<recipe>/pretrain.toml`` exists; else the finetunings start from
    random weights), LULC and water finetuning with ``jobs/<recipe>/``, or the models a previous
    run of the benchmark trained from the same specs, code and dataset (``out/trained.json``)."""
    from nationmap.train.checkpoint import find_checkpoint, write_bundle
    from nationmap.train.config import resolve_config
    from nationmap.train.run import run_training

    key, record = training_key(recipe, dataset, size), out / "trained.json"
    bundles = {task: out / "models" / task for task in ("lulc", "water")}
    r = json.loads(record.read_text()) if record.exists() else {}
    if r.get("key") == key:
        return TrainedRecipe(bundles, r["train_s"], r["commit"], r["date"], reused=True)
    shutil.rmtree(out, ignore_errors=True)
    tiny = dict(epochs=1, preset="tiny", batch_size=4) if size == "tiny" else {}
    t0 = time.time()
    init = {}
    if "pretrain" in recipe_tasks(recipe):
        init["init"] = str(run_training(resolve_config("pretrain", f"{recipe}/pretrain", dict(
            data=str(dataset), out=str(out / "runs"), name="pretrain", **tiny))).run_dir)
    for task in bundles:
        run = run_training(resolve_config(task, f"{recipe}/{task}", dict(
            data=str(dataset), out=str(out / "runs"), name=task, **init, **tiny))).run_dir
        write_bundle(bundles[task], find_checkpoint(run, "best"))
    trained = TrainedRecipe(bundles, time.time() - t0, git_commit() or "unknown", _today(), reused=False)
    write_training_record(record, key, trained)
    return trained


@dataclass(frozen=True)
class TrainedRecipe:
    """A recipe's LULC and water bundles and how they came about."""

    bundles: dict[str, Path]
    train_s: float  # wall time of the three trainings
    commit: str  # the nationmap commit they were trained at
    date: str
    reused: bool  # trained by an earlier run of the benchmark (same training key)


def recipe_tasks(recipe: str) -> tuple[str, ...]:
    """The trainings of ``jobs/<recipe>/``: LULC and water, after pretraining when it has a pretrain.toml."""
    return (("pretrain",) if (JOBS_DIR / recipe / "pretrain.toml").is_file() else ()) + ("lulc", "water")


def training_key(recipe: str, dataset: Path, size: str) -> str:
    """What a recipe's trained models depend on: its job specs' settings, the code of training, models,
    losses and data preparation, the dataset's path and the benchmark size (SHA-256, hex)."""
    import tomllib

    h = hashlib.sha256(f"{Path(dataset).resolve()}|{size}".encode())
    for task in recipe_tasks(recipe):  # the settings, not the comments
        spec = tomllib.loads((JOBS_DIR / recipe / f"{task}.toml").read_text())
        h.update(json.dumps(spec, sort_keys=True).encode())
    files = {p.relative_to(ROOT).as_posix(): p for d in TRAINING_CODE for p in (ROOT / d).rglob("*.py")}
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes())
    return h.hexdigest()


def write_training_record(path: Path, key: str, trained: TrainedRecipe) -> None:
    path.write_text(json.dumps({"key": key, "train_s": round(trained.train_s, 1), "commit": trained.commit,
                                "date": trained.date}, indent=1))


def _today() -> str:
    return time.strftime("%Y-%m-%d", time.gmtime())


def _map(bundles: dict[str, Path], heldout: tuple[Path, Path, str], out: Path, spec: Path | None = None,
         **settings):
    """The held-out month mapped with ``bundles`` (in process) with the ``[infer]`` settings of
    ``spec`` (a recipe's ``infer.toml``; None: :class:`InferConfig`'s defaults) and ``settings``
    over them; its inputs, outputs and the serial executor are the benchmark's. Returns
    (run dir, seconds, config)."""
    from nationmap.infer.config import InferConfig, load_infer_defaults
    from nationmap.infer.pipeline import run_inference

    raw, catalog, region = heldout
    shutil.rmtree(out, ignore_errors=True)  # a fresh products run, not the next version of the last one
    inputs = dict(region=region, month=MONTH, catalog=str(catalog), lulc_model=str(bundles["lulc"]),
                  water_model=str(bundles["water"]), out=str(out), lulc_dir=str(raw / "lulc"),
                  pixels_per_degree=_ppd(raw), executor="serial")
    cfg = InferConfig.from_dict({**(load_infer_defaults(spec) if spec else {}), **settings, **inputs})
    t0 = time.time()
    manifest = run_inference(cfg, log=lambda *_: None)
    return Path(manifest.run_dir), time.time() - t0, cfg


def _ppd(raw: Path) -> int:
    import json

    return int(json.loads((raw / "synth.json").read_text())["config"]["lulc_pixels_per_degree"])


def _zero_classes(lulc: "MethodScores", classes: list[str]) -> list[str]:
    """The training split's classes present in the held-out reference that the map got at IoU 0."""
    return [c.name for c in lulc.scores.classes if c.name in classes and c.iou == 0.0 and c.truth_pixels]


def _row(name: str, lulc: "MethodScores", water: "MethodScores | None", train_s: float | None,
         classes: list[str]) -> dict:
    zero = _zero_classes(lulc, classes)
    return {"method": name, "LULC mIoU": fmt(lulc.headline), "mAcc": fmt(lulc.scores.macc),
            "boundary F (2 px)": fmt(lulc.boundary_f), "thin-water recall": fmt(lulc.thin_water_recall),
            "water IoU": fmt(water.headline if water else None),
            "water boundary F": fmt(water.boundary_f if water else None),
            "classes at IoU 0": ", ".join(zero) or "none",
            "training (s)": "-" if train_s is None else f"{train_s:.0f}"}


def run(size: str, workdir: Path) -> Result:
    from nationmap.metrics import BASELINE_ROW
    from nationmap.products.agreement import map_agreement

    recipes = FULL_RECIPES if size == "full" else ("cpu-demo",)
    for recipe in recipes:  # before hours of work, not after
        for task in ("lulc", "water", "infer"):
            if not (JOBS_DIR / recipe / f"{task}.toml").is_file():
                raise FileNotFoundError(f"no job spec jobs/{recipe}/{task}.toml")
    workdir.mkdir(parents=True, exist_ok=True)
    heldout = heldout_world(workdir, size)
    out = workdir / f"quality-{size}"  # each recipe's trained models are kept for the next run
    res = Result("quality", "Map quality on a held-out region of another world, beside the per-pixel baseline")
    for recipe in recipes:
        region = RECIPE_REGIONS[recipe]
        _, dataset = training_data(workdir, size, region)
        base_run, baseline = _baseline(dataset, heldout, out / f"baseline-{region}")
        trained = _train_recipe(recipe, dataset, out / recipe, size)
        run_dir, map_s, cfg = _map(trained.bundles, heldout, out / f"{recipe}-products", JOBS_DIR / recipe / "infer.toml",
                                   **({} if size == "full" else dict(overlap=16)))
        a = map_agreement(run_dir, heldout[0] / "lulc", baseline_run=base_run)
        lulc, water = a.products["lulc"].report, a.products["water"].report
        classes = _training_classes(dataset)
        if not res.rows:  # the reference's majority class: the same pixels for every recipe
            res.rows.append(_row(lulc.majority.name, lulc.majority, water.majority, None, classes))
            res.data["pixels"], res.data["cells"] = a.products["lulc"].pixels, list(a.cells)
        res.rows += [_row(f"{BASELINE_ROW}, {region} data", lulc.baseline, water.baseline, None, classes),
                     _row(f"nationmap, jobs/{recipe} ({region} data)", lulc.model, water.model, trained.train_s,
                          classes)]
        res.data[recipe] = {"region": region, "train_pairs": _train_pairs(dataset), "classes": classes,
                            "trainings": list(recipe_tasks(recipe)),
                            "lulc": lulc.model.to_dict(), "water": water.model.to_dict(),
                            "train_s": round(trained.train_s, 1), "map_s": round(map_s, 1),
                            "infer": {"tta": cfg.tta, "overlap": cfg.overlap, "blend": cfg.blend, "batch_size": cfg.batch_size},
                            "trained": {"commit": trained.commit, "date": trained.date, "reused": trained.reused},
                            "baseline": {"lulc": lulc.baseline.to_dict(), "water": water.baseline.to_dict(), **baseline}}
        key = recipe.removeprefix("cpu-")
        res.ratios[f"{key}_miou_minus_baseline"] = lulc.model.headline - lulc.baseline.headline
        res.ratios[f"{key}_classes_at_iou_0"] = float(len(_zero_classes(lulc.model, classes)))
    res.notes += _notes(res, heldout)
    return res


def _baseline(dataset: Path, heldout, out: Path) -> tuple[Path, dict]:
    """The per-pixel baselines fitted on ``dataset``'s training split, mapping the held-out month;
    (products run dir, fit and map seconds)."""
    from nationmap.baseline.bundle import fit_baseline

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    bundles = {t: fit_baseline(dataset, t, out / f"model-{t}", log=lambda *_: None) for t in ("lulc", "water")}
    fit_s = time.time() - t0
    run_dir, map_s, _ = _map(bundles, heldout, out / "products", batch_size=2)
    return run_dir, {"fit_s": round(fit_s, 1), "map_s": round(map_s, 1)}


def _train_pairs(dataset: Path) -> int:
    from nationmap.data.dataset import PreparedDataset

    return int(PreparedDataset(dataset).meta["patches"]["train"])


def _training_classes(dataset: Path) -> list[str]:
    """The LULC classes with pixels in the training split."""
    from nationmap.data.dataset import PreparedDataset
    from nationmap.data.lulc import class_table_from_dict

    ds = PreparedDataset(dataset)
    names = class_table_from_dict(ds.meta["class_table"]).scheme("lulc9").names
    pixels = ds.meta["class_frequencies"]["train"]["lulc9"]["pixels"]
    return [n for n, p in zip(names, pixels) if p > 0]


def _notes(res: Result, heldout) -> list[str]:
    from nationmap.metrics import BASELINE_ROW

    per_class = lambda d: ", ".join(f"{c} {fmt(v['iou'], 2)}" for c, v in d["classes"].items())  # noqa: E731
    notes = [f"Held-out: cells {heldout[2]} of the world of seed {HELDOUT_SEED}, {MONTH}; "
             f"{res.data['pixels']:,} LULC pixels scored, the same for every row."]
    for recipe in FULL_RECIPES:
        if recipe in res.data:
            d = res.data[recipe]
            notes += [f"jobs/{recipe} and its baseline trained on the {d['region']} region of the demo's world "
                      f"({d['train_pairs']} training pairs; classes: {', '.join(d['classes'])}); baseline fit "
                      f"{d['baseline']['fit_s']:.0f} s, map {d['baseline']['map_s']:.0f} s; models trained at "
                      f"commit {d['trained']['commit']} on {d['trained']['date']} ({', '.join(d['trainings'])})"
                      + (" (reused by this run: the same specs, training code and dataset)." if d['trained']['reused']
                         else "."),
                      f"jobs/{recipe}/infer.toml mapped the held-out month with test-time augmentation "
                      f"{d['infer']['tta']!r}, windows overlapping by {d['infer']['overlap']} px, "
                      f"{d['infer']['blend']} blending ({d['map_s']:.0f} s).",
                      f"Per-class IoU, {BASELINE_ROW} ({d['region']} data): {per_class(d['baseline']['lulc'])}.",
                      f"Per-class IoU, jobs/{recipe}: {per_class(d['lulc'])}."]
    return notes


if __name__ == "__main__":
    main(run, __doc__)
