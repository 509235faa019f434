"""``nationmap runs`` over damaged records: a damaged record is listed as damaged with its reason
and the others are still listed; a damaged area table is one line of its run; a refresh's log
replaced by a link out of its directory is refused, never printed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from nationmap.files import write_json
from nationmap.ops.publish import MonthDir
from nationmap.records import CellRecord, FileEntry, Products, RefreshRecord, RunManifest
from tests.reliability.conftest import assert_refused, run_cli

GOOD_SUMMARY = {"run_id": "lulc-good", "kind": "train", "task": "lulc", "status": "finished",
                "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T01:00:00+00:00", "seconds": 3600.0,
                "best": {"metric": "val/miou", "value": 0.5, "epoch": 3}}


def _training_run(root: Path, name: str, summary: str) -> None:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"task": "lulc", "data": "data/ds", "preset": "tiny"}))
    (run / "summary.json").write_text(summary)


@pytest.mark.parametrize("summary, reason", [
    (json.dumps({**GOOD_SUMMARY, "run_id": "lulc-bad", "best": "high"}), "best must be a table"),
    (json.dumps({**GOOD_SUMMARY, "run_id": "lulc-bad", "status": 5}), "status must be a string"),
    (json.dumps({**GOOD_SUMMARY, "run_id": "lulc-bad", "best": {"metric": "val/miou", "value": "0.5", "epoch": 3}}),
     "value must be a number"),
    (json.dumps(["lulc-bad"]), "not a record"),
    ('{"run_id": "lulc-bad", "status": "fini', "not a readable JSON record"),
])
def test_a_damaged_training_summary_is_listed_as_damaged_and_the_rest_listed(summary, reason, tmp_path):
    runs = tmp_path / "runs"
    _training_run(runs, "lulc-good", json.dumps(GOOD_SUMMARY))
    _training_run(runs, "lulc-bad", summary)
    outcome = run_cli(["runs", "list", "--root", runs])
    assert outcome.code == 0 and "Traceback" not in outcome.output, outcome.output
    assert "lulc-good" in outcome.output and "finished" in outcome.output
    damaged = [line for line in outcome.output.splitlines() if line.startswith("damaged lulc-bad/summary.json")]
    assert len(damaged) == 1 and reason in damaged[0], outcome.output
    listed = run_cli(["runs", "list", "--root", runs, "--json"])
    by_id = {r["run_id"]: r for r in json.loads(listed.output)["runs"]}
    assert by_id["lulc-bad/summary.json"]["status"] == "damaged" and by_id["lulc-good"]["status"] == "finished"
    shown = run_cli(["runs", "show", "lulc-bad/summary.json", "--root", runs])
    assert shown.code == 0 and "status    damaged" in shown.output and reason in shown.output, shown.output


def test_damaged_manifests_and_refresh_records_are_listed_as_damaged(tmp_path):
    products = tmp_path / "products"
    month = MonthDir(products / "demo" / "2022-09")
    write_json(month.refreshes / "refresh-demo-good.json", RefreshRecord(
        run_id="refresh-demo-good", status="ok", region="demo", month="2022-09", started="2026-02-01T00:00:00+00:00"))
    (month.refreshes / "refresh-demo-bad.json").write_text(json.dumps(
        {"format": "nationmap-run/1", "run_id": "refresh-demo-bad", "status": "ok", "region": "demo", "month": 202209}))
    month.staging.mkdir(parents=True)
    (month.staging / "manifest.json").write_text('{"format": "nationmap-run/1", "run_id": "infer-')  # cut short
    outcome = run_cli(["runs", "list", "--root", products])
    assert outcome.code == 0 and "refresh-demo-good" in outcome.output, outcome.output
    assert "damaged demo/2022-09/refreshes/refresh-demo-bad.json: " in outcome.output and "month" in outcome.output
    assert "damaged demo/2022-09/.staging/manifest.json: " in outcome.output


def _run_with_area_table(run: Path, table: str) -> Path:
    csv = run / "tables" / "demo_2022-09_areas.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text(table)
    manifest = RunManifest(run_id="infer-demo-1", status="ok", region="demo", month="2022-09",
                           started="2026-03-01T00:00:00+00:00",
                           cell_results=[CellRecord(cell="N35E137", key="k", status="ok",
                                                    files={"lulc": FileEntry("lulc.tif", "ab")})],
                           products=Products(tables={"areas_csv": FileEntry(str(csv.relative_to(run)), "cd")}))
    write_json(run / "manifest.json", manifest)
    return csv


AREAS = ("region,month,scope,cell,layer,code,class,area_km2,share\n"
         "demo,2022-09,region,,lulc,1,Water,12.5,0.1\n"
         "demo,2022-09,region,,lulc,3,Forest,100.0,0.9\n"
         "demo,2022-09,cell,N35E137,lulc,1,Water,12.5,0.1\n")


@pytest.mark.parametrize("cut", [0, 30, AREAS.index("Forest") + 3])  # empty, in the header, in a region row
def test_a_truncated_area_table_is_one_line_of_runs_show(cut, tmp_path):
    run = tmp_path / "runs" / "infer-demo-1"
    csv = _run_with_area_table(run, AREAS[:cut])
    listed = run_cli(["runs", "list", "--root", tmp_path / "runs"])
    assert listed.code == 0 and "infer-demo-1" in listed.output and "Traceback" not in listed.output, listed.output
    shown = run_cli(["runs", "show", "infer-demo-1", "--root", tmp_path / "runs"])
    assert shown.code == 0 and "Traceback" not in shown.output, shown.output
    lines = [line for line in shown.output.splitlines() if "unreadable" in line]
    assert len(lines) == 1 and str(csv) in lines[0] and "nan" not in shown.output, shown.output
    csv.write_text(AREAS)  # the whole table reads
    whole = run_cli(["runs", "show", "infer-demo-1", "--root", tmp_path / "runs"])
    assert "lulc: Water 12.5, Forest 100.0" in whole.output and "unreadable" not in whole.output, whole.output


def test_runs_logs_refuses_a_log_link_leading_out_of_the_records(tmp_path):
    month = MonthDir(tmp_path / "products" / "demo" / "2022-09")
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    record = RefreshRecord(run_id="refresh-demo-2022-09-x", status="ok", region="demo", month="2022-09")
    write_json(month.refreshes / f"{record.run_id}.json", record)
    log = month.refreshes / f"{record.run_id}.log"
    os.symlink(secret, log)
    outcome = run_cli(["runs", "logs", record.run_id, "--root", tmp_path / "products"])
    assert_refused(outcome, 2, "leads outside")
    assert "hunter2" not in outcome.output
    shown = run_cli(["runs", "show", record.run_id, "--root", tmp_path / "products"])
    assert shown.code == 0 and str(secret) not in shown.output and "reports (0)" in shown.output, shown.output
    # a link that stays beside the records is the log
    log.unlink()
    (month.refreshes / "kept.txt").write_text("2026-12-01T00:00:00Z published v1\n")
    os.symlink("kept.txt", log)
    outcome = run_cli(["runs", "logs", record.run_id, "--root", tmp_path / "products"])
    assert outcome.code == 0 and "published v1" in outcome.output, outcome.output
