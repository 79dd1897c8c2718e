"""Human decisions through the build: on the demo (where every replay row fails the audit),
``review import`` accepting four failed rows, then rejecting one of them again, then ``build``
moves exactly three rows into the released shards, records the decisions per row, reruns only
assemble and later stages, and the audit report and the release README gain the audit-vs-human
table. Also: rows the audit passed rejected the same way, export / import round trip, and where
``review serve`` binds."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from radialog_instruct.flows.cli import app
from radialog_instruct.tasks.quality.review import app as review_app
from radialog_instruct.tasks.quality.review.spreadsheet import EXPORT_COLUMNS, import_csv
from radialog_instruct.tasks.quality.validate import run_validate
from radialog_instruct.tasks.storage.assemble import run_assemble
from radialog_instruct.tasks.workdir import Workdir

from audited_demo import audited_demo

pytestmark = pytest.mark.slow
runner = CliRunner()
VERSION = "v1.1.0"


def cli(*args: Any) -> Any:
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def demo_build(tmp_path_factory) -> Workdir:
    root = tmp_path_factory.mktemp("review-demo") / "work"
    result = cli("build", "--demo", "--workdir", root)
    assert result.exit_code == 0, result.output
    return Workdir.at(root)


def rows_of(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


def released(wd: Workdir) -> list[dict[str, Any]]:
    return [r for split in ("train", "validate", "test") for r in rows_of(wd.shards(VERSION) / split)]


def sheet(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    path.write_text("sample_id,decision,note\n" + "".join(f"{s},{d},{n}\n" for s, d, n in rows), encoding="utf-8")
    return path


def test_imports_then_build_release_exactly_the_rows_people_accepted(demo_build, tmp_path):
    wd = demo_build
    audit = pq.read_table(wd.table("audit")).to_pylist()
    assert audit and {a["audit"]["verdict"] for a in audit} == {"fail"}  # the demo's random-weight generator
    ids = sorted(a["sample_id"] for a in audit)[:4]
    before = {"rows": len(released(wd)), "stamps": {s: (wd.stamps / f"{s}.json").read_bytes()
                                                     for s in ("generate", "audit", "assemble")}}
    first = cli("review", "import", sheet(tmp_path / "accept.csv", [(i, "accept", "readable enough") for i in ids]),
                "--workdir", wd.root, "--reviewer", "ann")
    assert first.exit_code == 0, first.output
    second = cli("review", "import", sheet(tmp_path / "reject.csv", [(ids[0], "reject", "garbled after all")]),
                 "--workdir", wd.root, "--reviewer", "bob")
    assert second.exit_code == 0, second.output

    result = cli("build", "--demo", "--workdir", wd.root)
    assert result.exit_code == 0, result.output
    for stage in ("generate", "audit"):  # not rerun: a decision is an input of assemble only
        assert (wd.stamps / f"{stage}.json").read_bytes() == before["stamps"][stage]
    assert (wd.stamps / "assemble.json").read_bytes() != before["stamps"]["assemble"]

    rows = released(wd)
    assert len(rows) == before["rows"] + 3
    moved = {r["sample_id"]: r for r in rows if r["is_pseudo_label"]}
    assert sorted(moved) == ids[1:]
    for row in moved.values():
        assert row["audit"]["verdict"] == "fail" and row["generation"]["request_hash"]
        assert {k: row["review"][k] for k in ("decision", "note", "reviewer", "audit_verdict")} == {
            "decision": "accept", "note": "readable enough", "reviewer": "ann", "audit_verdict": "fail"}
    (rejected,) = [r for r in rows_of(wd.shards(VERSION) / "excluded") if r["sample_id"] == ids[0]]
    assert rejected["review"]["decision"] == "reject" and rejected["review"]["note"] == "garbled after all"

    manifest = json.loads((wd.shards(VERSION) / "manifest.json").read_text())
    assert manifest["schema_version"] == 2
    assert manifest["review"] == {"decisions": 4, "accepted": 3, "rejected": 1, "accepted_failed": 3,
                                  "rejected_passed": 0, "stale": 0}
    assert manifest["excluded"]["rows"] == len(audit) - 3 and manifest["excluded"]["by_review"] == 1

    human = json.loads(wd.report("audit-summary.json").read_text())["audit_vs_human"]
    assert {k: human["all"][k] for k in ("rows", "reviewed", "tp", "fp", "fn", "tn", "precision", "recall")} == {
        "rows": len(audit), "reviewed": 4, "tp": 1, "fp": 3, "fn": 0, "tn": 0, "precision": 0.25, "recall": 1.0}
    markdown = wd.report("audit.md").read_text()
    assert "## Audit vs. human review" in markdown and f"| all | 4 / {len(audit)} | 3 / 1 | 25.0% (1/4) |" in markdown
    assert '<table class="human">' in wd.report("audit.html").read_text()
    readme = (wd.release / VERSION / "README.md").read_text()
    assert "### Audit vs. human review" in readme and f"People reviewed 4 of the {len(audit)}" in readme


def test_export_lists_every_replay_row_and_a_filled_sheet_imports_back(demo_build, tmp_path):
    wd = Workdir.at(shutil.copytree(demo_build.root, tmp_path / "copy"))
    out = tmp_path / "review.csv"
    result = cli("review", "export", "--workdir", wd.root, "-o", out)
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    audit = pq.read_table(wd.table("audit"), columns=["sample_id", "request_hash"]).to_pylist()
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == len(audit)
    assert {(r["sample_id"], r["request_hash"]) for r in rows} == {(a["sample_id"], a["request_hash"]) for a in audit}
    assert all(r["answer"] and r["audit_verdict"] == "fail" for r in rows)
    undecided = [r for r in rows if not r["decision"]]
    for row, decision in zip(undecided[:2], ("reject", "accept")):
        row.update(decision=decision, note=f"{decision}ed in a spreadsheet")
    with open(out, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    imported = import_csv(out, wd, reviewer="sheet")
    assert (imported["imported"], imported["skipped_blank"]) == (2, len(rows) - 2 - (len(rows) - len(undecided)))
    decided = cli("review", "export", "--workdir", wd.root, "-o", tmp_path / "decided.csv", "--decided-only")
    assert decided.exit_code == 0
    with open(tmp_path / "decided.csv", newline="", encoding="utf-8") as handle:
        again = {r["sample_id"]: r for r in csv.DictReader(handle)}
    for row in undecided[:2]:
        assert again[row["sample_id"]]["decision"] == row["decision"] and again[row["sample_id"]]["reviewer"] == "sheet"


def test_rows_the_audit_passed_can_be_rejected(tmp_path):
    params, wd = audited_demo(tmp_path / "work")
    audit = pq.read_table(wd.table("audit")).to_pylist()
    passed = sorted(a["sample_id"] for a in audit if a["audit"]["verdict"] == "pass")
    assert len(passed) > 2 and len(passed) < len(audit)
    import_csv(sheet(tmp_path / "r.csv", [(passed[0], "reject", "misses the effusion"),
                                          (passed[1], "reject", "wrong side"), (passed[2], "accept", "")]),
               wd, reviewer="carl")
    summary = run_assemble(params, wd)
    assert summary["review"]["rejected_passed"] == 2 and summary["excluded"]["by_review"] == 2
    pseudo = {r["sample_id"]: r for r in released(wd) if r["is_pseudo_label"]}
    assert len(pseudo) == len(passed) - 2 and passed[0] not in pseudo and pseudo[passed[2]]["review"]["decision"] == "accept"
    excluded = {r["sample_id"]: r for r in rows_of(wd.shards(VERSION) / "excluded")}
    assert excluded[passed[0]]["audit"]["verdict"] == "pass"
    assert excluded[passed[0]]["review"]["decision"] == "reject" and excluded[passed[1]]["review"]["note"] == "wrong side"
    human = json.loads(wd.report("audit-summary.json").read_text())["audit_vs_human"]["all"]
    assert (human["reviewed"], human["fn"], human["tn"], human["recall"]) == (3, 2, 1, 0.0)
    assert run_validate(params, wd)["success"]  # accepted / rejected rows satisfy the shard checks


def test_serve_binds_loopback_unless_another_host_is_given(demo_build, monkeypatch):
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(review_app, "serve", lambda wd, **kw: calls.append(kw))
    local = cli("review", "serve", "--workdir", demo_build.root, "--reviewer", "dee")
    assert local.exit_code == 0 and "warning" not in local.output and "http://127.0.0.1:8765/" in local.output
    wide = cli("review", "serve", "--workdir", demo_build.root, "--host", "0.0.0.0", "--port", "9000")
    assert wide.exit_code == 0 and "warning: serving on 0.0.0.0" in wide.output
    assert [(c["host"], c["port"]) for c in calls] == [("127.0.0.1", 8765), ("0.0.0.0", 9000)]
    assert calls[0]["reviewer"] == "dee"
    missing = cli("review", "serve", "--workdir", demo_build.root / "nowhere")
    assert missing.exit_code == 2 and "work dir not found" in missing.output
