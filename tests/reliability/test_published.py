"""Red team of published versions and their reports: damage after publication, the change table
against a missing, foreign or planted previous month, and a disk that fills during a refresh.

One month (September of the tiny world) is refreshed once for the module; each test damages it as
a tired operator or a failing disk would, reruns what an operator reruns, and checks what is said,
recorded and left on disk. The tests run in file order: the last one leaves a republished v2."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from nationmap.ops.publish import MonthDir, check_month, point
from nationmap.records import RefreshRecord, RunManifest
from tests.conftest import TINY_CELLS
from tests.ops.test_refresh import SLUG, write_spec
from tests.reliability.conftest import assert_refused, run_cli, tree_hashes

CELL = TINY_CELLS[0]


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def flip_a_byte(path: Path) -> None:
    """One byte changed in place (the same inode), as a failing disk or a stray write would."""
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(path.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.chmod(path, 0o444)


@pytest.fixture(autouse=True)
def _wide_terminal(monkeypatch):
    """The console wraps at the terminal's width: a wide one keeps each line of the output whole."""
    monkeypatch.setenv("COLUMNS", "1000")


def newest_record(month: MonthDir) -> RefreshRecord:
    return RefreshRecord.read(max(month.refreshes.glob("*.json"), key=os.path.getmtime))


@pytest.fixture(scope="module")
def published(tiny_catalog, tiny_bundles, tiny_world, tmp_path_factory):
    """September refreshed and published as v1 (the catalog is kept elsewhere: no raw_dir)."""
    root = tmp_path_factory.mktemp("published")
    spec = write_spec(root, "", tiny_catalog, tiny_bundles, tiny_world / "lulc")
    refresh = ["refresh", "--config", spec, "--month", "2022-09"]
    outcome = run_cli(refresh)
    assert outcome.code == 0, outcome.output
    month = MonthDir(root / "products" / SLUG / "2022-09")
    assert month.versions() == [1]
    return {"root": root, "products": root / "products", "month": month, "refresh": refresh, "spec": spec}


def test_a_byte_flipped_in_a_published_cog_is_repaired_by_the_rerun(published):
    month: MonthDir = published["month"]
    cog = month.version(1) / "cells" / CELL / f"{CELL}_2022-09_lulc.tif"
    good = sha(cog)
    flip_a_byte(cog)
    # a published file is a copy: the staging run it is repaired from keeps its bytes
    assert sha(month.staging / "cells" / CELL / cog.name) == good
    outcome = run_cli(published["refresh"])
    assert outcome.code == 0, outcome.output
    assert f"v1 damaged: cells/{CELL}/{cog.name}: SHA-256 differs" in outcome.output
    assert "repaired from .staging" in outcome.output
    assert sha(cog) == good and cog.stat().st_mode & 0o222 == 0
    assert month.versions() == [1] and os.readlink(month.latest) == "v1"
    check = newest_record(month).checked[0]
    assert check.version == 1 and check.action == "repaired" and cog.name in check.damaged[0]


def test_a_stac_item_edited_in_place_is_repaired_by_the_rerun(published):
    month: MonthDir = published["month"]
    item = next(p for p in sorted((month.version(1) / "stac").rglob("*.json")) if CELL in p.name)
    good = item.read_bytes()
    os.chmod(item, 0o644)
    with open(item, "r+") as f:  # edited in place: the same inode
        f.write("{" + " " * 7)
    os.chmod(item, 0o444)
    outcome = run_cli(published["refresh"])
    assert outcome.code == 0, outcome.output
    assert f"v1 damaged: {item.relative_to(month.version(1))}: SHA-256 differs" in outcome.output
    assert item.read_bytes() == good
    assert newest_record(month).checked[0].action == "repaired"


def test_verify_lists_each_damaged_file_and_repair_restores_them(published, tmp_path):
    products, month = published["products"], published["month"]
    v1 = month.version(1)
    mosaic = next((v1 / "mosaic").glob("*_lulc.tif"))
    quicklook = next((v1 / "quicklooks").glob("*.png"))
    water = v1 / "cells" / CELL / f"{CELL}_2022-09_water.tif"
    outside = tmp_path / "water.tif"
    shutil.copy(water, outside)  # the same bytes, outside the products root
    os.chmod(mosaic, 0o644)
    mosaic.write_bytes(mosaic.read_bytes()[:1000])
    quicklook.unlink()
    water.unlink()
    water.symlink_to(outside)
    (v1 / "cells" / "notes.txt").write_text("planted")
    before = tree_hashes(products)

    found = run_cli(["verify", products])
    assert found.code == 1, found.output
    lines = found.output.strip().splitlines()
    for path, why in ((mosaic, "1000 bytes, published with"), (quicklook, "missing"),
                      (water, "leads outside the version"), (v1 / "cells" / "notes.txt", "never published")):
        assert sum(str(path.relative_to(products)) in line and why in line for line in lines) == 1, found.output
    assert len(lines) == 5 and "4 damaged, 0 repaired, 4 not repaired" in lines[-1]
    assert tree_hashes(products) == before  # checking changes nothing

    repaired = run_cli(["verify", products, "--region", ",".join(TINY_CELLS), "--month", "2022-09", "--repair"])
    assert repaired.code == 0, repaired.output
    quarantined = month.root / ".quarantine" / "v1" / "cells" / "notes.txt"
    assert repaired.output.count("repaired from .staging") == 3 and f"(moved to {quarantined})" in repaired.output
    assert not water.is_symlink() and outside.exists() and not (v1 / "cells" / "notes.txt").exists()
    assert quarantined.read_text() == "planted"  # moved out of every version, never deleted
    again = run_cli(["verify", products])
    assert again.code == 0 and "every file as published" in again.output, again.output

    assert_refused(run_cli(["verify", products, "--month", "2022-13"]), 2, "2022-13")
    assert_refused(run_cli(["verify", tmp_path / "nowhere"]), 2, "nowhere")
    assert_refused(run_cli(["verify", products, "--month", "2021-01"]), 2, "no published version")


def _rewrite_info(version: Path, change):
    """``version.json`` of ``version`` rewritten by ``change(info)``; returns what restores it."""
    path = version / "version.json"
    good = path.read_bytes()

    def write(data: bytes):
        os.chmod(path, 0o644)
        path.write_bytes(data)
        os.chmod(path, 0o444)
    info = json.loads(good)
    change(info)
    write(json.dumps(info).encode())
    return lambda: write(good)


def test_a_file_version_json_does_not_list_is_never_deleted(published):
    """version.json's list lacks a COG and gives another a wrong SHA-256: the list and the manifest
    disagree, damage to the version's own record, never repaired in place and never a deletion; a
    file neither names is moved to the month's quarantine, beside it, never deleted."""
    products, month = published["products"], published["month"]
    v1 = month.version(1)
    cog, water = (f"cells/{CELL}/{CELL}_2022-09_{p}.tif" for p in ("lulc", "water"))
    kept = {rel: sha(v1 / rel) for rel in (cog, water)}
    planted = v1 / "cells" / "notes.txt"
    quarantine = month.root / ".quarantine" / "v1" / "cells"

    def lose_and_alter(info):
        del info["files"][cog]
        info["files"][water]["sha256"] = "0" * 64
    restore = _rewrite_info(v1, lose_and_alter)
    try:
        for text in ("planted again", "and again"):  # a second check finds the same disagreement
            planted.write_text(text)
            state = check_month(month, repair=True)[0]
            lines = [d.line() for d in state.damage]
            assert not state.ok and {rel: sha(v1 / rel) for rel in kept} == kept, lines
            for rel in kept:
                assert sum(line.startswith(f"{rel}: ") and "the manifest" in line and "not repaired" in line
                           for line in lines) == 1, lines
            moved = [p for p in quarantine.glob("notes.txt*") if p.read_text() == text]
            assert not planted.exists() and len(moved) == 1, lines
            assert f"cells/notes.txt: never published in this version (moved to {moved[0]})" in lines
        found = run_cli(["verify", products, "--repair"])
        assert found.code == 1 and f"v1/{cog}: " in found.output, found.output
        assert {rel: sha(v1 / rel) for rel in kept} == kept
    finally:
        restore()
        check_month(month, repair=True)  # on code that deleted the COG: back from the staging run
    assert run_cli(["verify", products]).code == 0


def test_a_gdal_sidecar_written_later_is_noted_and_a_published_one_changed_is_damage(published):
    """``gdalinfo -stats`` on a COG published without a sidecar writes one beside it: noted, left in
    place, not an alarm. A published sidecar (class names) that changed is damage, repaired."""
    products, month = published["products"], published["month"]
    cells = month.version(1) / "cells" / CELL
    stats = cells / f"{CELL}_2022-09_confidence.tif.aux.xml"
    classes = cells / f"{CELL}_2022-09_lulc.tif.aux.xml"
    assert not stats.exists() and classes.is_file()
    pam = ('<PAMDataset>\n  <PAMRasterBand band="1">\n    <Metadata>\n'
           '      <MDI key="STATISTICS_MEAN">51.2</MDI>\n    </Metadata>\n  </PAMRasterBand>\n</PAMDataset>\n')
    stats.write_text(pam)
    good = classes.read_bytes()
    try:
        for args in ([], ["--repair"]):
            noted = run_cli(["verify", products, *args])
            assert noted.code == 0 and "every file as published" in noted.output, noted.output
            assert f"{stats.relative_to(products)}: " in noted.output and "left in place" in noted.output
            assert stats.read_text() == pam
        rerun = run_cli(published["refresh"])
        assert rerun.code == 0 and stats.name in rerun.output, rerun.output
        assert any(stats.name in note for note in newest_record(month).checked[0].notes)
        os.chmod(classes, 0o644)
        classes.write_text(pam)
        damaged = run_cli(["verify", products])
        assert damaged.code == 1 and f"{classes.relative_to(products)}: " in damaged.output, damaged.output
        repaired = run_cli(["verify", products, "--repair"])
        assert repaired.code == 0 and classes.read_bytes() == good, repaired.output
    finally:
        stats.unlink(missing_ok=True)
        check_month(month, repair=True)


def test_a_rerun_whose_inference_fails_still_checks_the_published_versions(published, tiny_catalog, tiny_world,
                                                                          tmp_path):
    """The models are gone: the inference fails before it writes anything, and the rerun has
    checked and repaired the month's versions all the same, and recorded it."""
    month: MonthDir = published["month"]
    spec = write_spec(tmp_path, "", tiny_catalog, {"lulc": tmp_path / "gone", "water": tmp_path / "gone"},
                      tiny_world / "lulc", out=str(published["products"]))
    cog = month.version(1) / "cells" / CELL / f"{CELL}_2022-09_water.tif"
    good = sha(cog)
    flip_a_byte(cog)
    try:
        outcome = run_cli(["refresh", "--config", spec, "--month", "2022-09"])
        assert outcome.code == 1 and "not a model bundle" in outcome.output, outcome.output
        assert f"v1 damaged: cells/{CELL}/{cog.name}: SHA-256 differs" in outcome.output, outcome.output
        assert sha(cog) == good
        record = newest_record(month)
        assert record.status == "failed" and record.checked[0].action == "repaired"
    finally:
        check_month(month, repair=True)


def test_a_damaged_older_version_that_cannot_be_repaired_makes_the_refresh_partial(published):
    """v1's own record is damaged (no other copy holds it) and v2 is newer: v1 cannot be repaired
    nor republished, so the rerun is partial (exit 3) and lists it; verify fails on it."""
    products, month = published["products"], published["month"]
    v1, v2 = month.version(1), month.root / "v2"
    shutil.copytree(v1, v2)  # a newer version of the same products
    pointers = {link: os.readlink(link) for link in (month.latest, month.region_latest)}
    info = v1 / "version.json"
    good = info.read_bytes()
    os.chmod(info, 0o644)
    info.write_text("{")
    try:
        outcome = run_cli(published["refresh"])
        assert outcome.code == 3, outcome.output
        assert "v1 damaged: version.json" in outcome.output and "partial" in outcome.output
        record = newest_record(month)
        assert record.status == "partial" and record.checked[0].action == "not repaired"
        assert [f.id for f in record.failures if f.what == "published"] == ["v1/version.json"]
        found = run_cli(["verify", products])
        assert found.code == 1 and "v1/version.json" in found.output, found.output
    finally:
        info.write_bytes(good)
        os.chmod(info, 0o444)
        shutil.rmtree(v2)
        for link, target in pointers.items():
            point(link, target)


class _FullDiskFile:
    """A file on a full disk: it opens, and every write fails as the kernel's does, naming no file."""

    def __init__(self, f):
        self.f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()

    def __getattr__(self, name):
        return getattr(self.f, name)


def test_a_full_disk_during_a_refresh_names_the_path_and_ends_the_record_failed(published, monkeypatch):
    """The disk fills as the inference writes its manifest: from then on no new block can be
    written (new files, appends); bytes a file already holds can still be overwritten."""
    import builtins

    import nationmap.files as files
    import nationmap.ops.refresh as refresh

    month: MonthDir = published["month"]
    full = []

    def on_a_filling_disk(path, mode="r", *args, **kwargs):
        if ".staging" in str(path) and "manifest.json" in str(path) and "w" in mode:
            full.append(path)
        f = builtins.open(path, mode, *args, **kwargs)
        return _FullDiskFile(f) if full and any(c in mode for c in "wax") else f

    monkeypatch.setattr(files, "open", on_a_filling_disk, raising=False)
    monkeypatch.setattr(refresh, "open", on_a_filling_disk, raising=False)
    before = tree_hashes(month.version(1))
    outcome = run_cli(published["refresh"])
    assert full, "the simulated disk never filled"
    assert_refused(outcome, 1, "No space left on device", str(month.staging / "manifest.json"))
    record = newest_record(month)
    assert record.status == "failed" and str(month.staging / "manifest.json") in record.error
    assert tree_hashes(month.version(1)) == before and RunManifest.read(month.staging / "manifest.json")


@pytest.fixture()
def october_without_inference(published, monkeypatch):
    """October refreshed with its inference replaced by a copy of September's staging run (the
    change table's reference is chosen and checked before the inference): returns the refresh
    command and the ``previous`` each inference was given."""
    import nationmap.infer.pipeline as pipeline
    from nationmap.files import write_json

    given = []

    def inference(cfg, force=False, log=print, run_dir=None):
        given.append(cfg.previous)
        shutil.copytree(published["month"].staging, run_dir, dirs_exist_ok=True)
        manifest = RunManifest.read(Path(run_dir) / "manifest.json")
        write_json(Path(run_dir) / "manifest.json", manifest.replace(month=cfg.month))
        return RunManifest.read(Path(run_dir) / "manifest.json")

    monkeypatch.setattr(pipeline, "run_inference", inference)
    return ["refresh", "--config", published["spec"], "--month", "2022-10"], given


def _no_manifest(v1: Path, tmp_path: Path):
    (v1 / "manifest.json").rename(tmp_path / "manifest.json")
    return lambda: (tmp_path / "manifest.json").rename(v1 / "manifest.json")


def _other_cells(v1: Path, tmp_path: Path):
    """September's latest moved to a version over two other cells (as if the region had changed)."""
    v9 = v1.parent / "v9"
    shutil.copytree(v1, v9, symlinks=True)
    text = (v9 / "manifest.json").read_text()
    for old, new in zip(TINY_CELLS, ("N44E142", "N44E143")):
        (v9 / "cells" / old).rename(v9 / "cells" / new)
        text = text.replace(f'"cell": "{old}"', f'"cell": "{new}"')
    (v9 / "manifest.json").unlink()  # published read-only
    (v9 / "manifest.json").write_text(text)
    os.replace(v1.parent / "latest", tmp_path / "latest")
    (v1.parent / "latest").symlink_to("v9")

    def restore():
        (v1.parent / "latest").unlink()
        os.replace(tmp_path / "latest", v1.parent / "latest")
        shutil.rmtree(v9)
    return restore


def _planted_outside(path: Path, tmp_path: Path):
    """``path`` replaced by a symlink to a file of the same bytes outside the products root;
    returns the function that puts the original back."""
    kept, outside = tmp_path / f"kept{path.suffix}", tmp_path / f"outside{path.suffix}"
    path.rename(kept)
    shutil.copy(kept, outside)
    path.symlink_to(outside)

    def restore():
        path.unlink()
        kept.rename(path)
    return restore


def _manifest_planted_outside(v1: Path, tmp_path: Path):
    return _planted_outside(v1 / "manifest.json", tmp_path)


def _cog_planted_outside(v1: Path, tmp_path: Path):
    return _planted_outside(v1 / "cells" / CELL / f"{CELL}_2022-09_lulc.tif", tmp_path)


@pytest.mark.parametrize("damage, words", [
    (_no_manifest, ("no change table", "manifest.json", "not found")),
    (_other_cells, ("no change table", "maps none of the 2 cells", "N44E142")),
    (_cog_planted_outside, ("no change table", f"cells/{CELL}/{CELL}_2022-09_lulc.tif", "leads outside")),
    (_manifest_planted_outside, ("no change table", "manifest.json", "leads outside")),
], ids=["manifest-missing", "other-cells", "cog-symlinked-outside", "manifest-symlinked-outside"])
def test_a_previous_month_that_cannot_be_compared_is_a_warning_never_a_silent_table(
        published, october_without_inference, damage, words, tmp_path):
    refresh, given = october_without_inference
    restore = damage(published["month"].version(1), tmp_path)
    try:
        outcome = run_cli(refresh)
    finally:
        restore()
    assert outcome.code == 0, outcome.output
    assert given == [""]  # no change table from it
    warnings = [line for line in outcome.output.splitlines() if line.startswith("warning: no change table")]
    assert len(warnings) == 1 and all(w in warnings[0] for w in words), outcome.output
    october = MonthDir(published["products"] / SLUG / "2022-10")
    assert newest_record(october).warnings == [warnings[0].removeprefix("warning: ")]


def test_previous_cogs_leading_outside_or_replaced_are_refused(published, tmp_path):
    from nationmap.errors import InputError
    from nationmap.infer.tables import read_previous

    v1 = published["month"].version(1)
    for plant, what in ((_cog_planted_outside, f"cells/{CELL}/"), (_manifest_planted_outside, "manifest.json")):
        restore = plant(v1, tmp_path)
        try:
            with pytest.raises(InputError, match=f"{what}.* leads outside"):
                read_previous(v1, "2022-10", 600)
        finally:
            restore()
    copy = tmp_path / "copy"
    shutil.copytree(v1, copy)
    flip_a_byte(copy / "cells" / CELL / f"{CELL}_2022-09_water.tif")
    with pytest.raises(InputError, match="SHA-256 differs"):
        read_previous(copy, "2022-10", 600)


def test_the_change_table_states_the_area_mapped_in_both_months(published, tiny_bundles, tmp_path):
    import pandas as pd

    from nationmap.infer.config import InferConfig
    from nationmap.infer.pipeline import describe_models
    from nationmap.infer.tables import PreviousMonth, read_previous, write_area_tables

    v1 = published["month"].version(1)
    layers = describe_models(InferConfig(region=",".join(TINY_CELLS), month="2022-10",
                                         lulc_model=str(tiny_bundles["lulc"]),
                                         water_model=str(tiny_bundles["water"]))).layers
    manifest = RunManifest.read(v1 / "manifest.json")
    cells = {c.cell: {p: v1 / "cells" / c.cell / e.path for p, e in c.files.items()} for c in manifest.ok_cells()}
    # September's COGs as October's: every pixel mapped in September is mapped in both months
    tables = write_area_tables(cells, layers, "tiny", "2022-10", tmp_path / "same" / "tiny",
                               read_previous(v1, "2022-10", 600), "serial")
    areas, change = pd.read_csv(tables["areas_csv"]), pd.read_csv(tables["change_csv"])
    mapped = areas.query("scope == 'region' and layer == 'mapped' and code == 1").area_km2.item()
    both = change.query("scope == 'region' and layer == 'mapped' and from_code == 1 and to_code == 1").area_km2.item()
    assert mapped > 0 and both == pytest.approx(mapped, rel=1e-6)
    from nationmap.products.areas import read_common_area  # the reader the refresh's summary uses
    assert read_common_area(tables["change_csv"]).km2 == pytest.approx(mapped, rel=1e-6)
    assert read_common_area(tables["change_csv"]).cells == tuple(sorted(cells))
    # a previous month over other cells: the table says it covers 0 km2, it is not merely empty
    elsewhere = PreviousMonth("2022-09", {"N44E142": cells[CELL]}, "k")
    tables = write_area_tables(cells, layers, "tiny", "2022-10", tmp_path / "other" / "tiny", elsewhere, "serial")
    change = pd.read_csv(tables["change_csv"])
    assert len(change) == 1 and change.layer.item() == "mapped" and change.area_km2.item() == 0.0


def test_a_damaged_version_that_cannot_be_repaired_is_republished(published):
    """The version's own manifest is damaged: no verified copy of it exists anywhere (the staging
    run's is rewritten by every rerun), so the rerun republishes the month and says so."""
    products, month = published["products"], published["month"]
    manifest = month.version(1) / "manifest.json"
    os.chmod(manifest, 0o644)
    with open(manifest, "a") as f:
        f.write(" ")
    outcome = run_cli(published["refresh"])
    assert outcome.code == 0, outcome.output
    assert "v1 damaged: manifest.json" in outcome.output
    assert "v1 could not be repaired: republished as v2" in outcome.output
    assert month.versions() == [1, 2] and os.readlink(month.latest) == "v2"
    assert json.loads((month.version(2) / "version.json").read_text())["supersedes"] == [
        {"version": 1, "damaged": ["manifest.json"]}]  # what was known damaged when it was replaced
    assert newest_record(month).checked[0].action == "republished as v2"
    listed = run_cli(["verify", products])
    assert listed.code == 0, listed.output  # the damage is known and replaced: not an alarm every night
    assert "v1/manifest.json" in listed.output and "superseded by v2" in listed.output


def test_new_damage_in_a_superseded_version_fails_verify(published):
    """v1 was replaced by v2 for its damaged manifest (the test above): that damage stays quiet,
    but a file of v1 damaged since is new damage, an alarm until repaired."""
    products, month = published["products"], published["month"]
    quicklook = next((month.version(1) / "quicklooks").glob("*.png"))
    quicklook.unlink()
    found = run_cli(["verify", products])
    assert found.code == 1, found.output
    assert "v1/manifest.json" in found.output and "1 not repaired" in found.output
    line = next(line for line in found.output.splitlines() if quicklook.name in line)
    assert "missing" in line and "damaged since" in line
    repaired = run_cli(["verify", products, "--repair"])
    assert repaired.code == 0 and quicklook.is_file(), repaired.output
