"""The validate stage's Great Expectations suites on hand-made shards: a good version passes, and
each kind of broken shard fails exactly the checks meant to catch it.

GX costs ~0.8 s per shard run, so the per-shard defects share one version: one shard per defect
under ``train/``, each judged on its own results.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct import schemas
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.io import sha256_file, write_json, write_parquet
from radialog_instruct.tasks.quality.expectations import ValidateConfig
from radialog_instruct.tasks.quality.validate import REPORT_JSON, REPORT_MD, run_validate, validate_version
from radialog_instruct.tasks.storage.shards import shard_name
from radialog_instruct.tasks.workdir import Workdir

VERSION = "v-test"
#: one shard's task mix: rows 0-3 report_generation, 4-5 findings_qa, 6-7 summarization and
#: 8-9 region_qa (the last two are pseudo labels)
TASKS = {"report_generation": 4, "findings_qa": 2, "summarization": 2, "region_qa": 2}
CFG = ValidateConfig(task_share={"report_generation": [0.3, 0.6], "summarization": [0.1, 0.3]},
                     min_rows={"report_generation": 2, "region_qa": 1}, max_instruction_chars=300)
NULLABLE = pa.schema([f.with_nullable(True) for f in schemas.INSTRUCT_SAMPLE])
PARAMS = {"assemble": {"version": VERSION},
          "validate": {"task_share": {"report_generation": [0.3, 0.5]}, "min_rows": {"findings_qa": 2}}}

Rows = list[dict[str, Any]]


def make_row(n: int, task: str, split: str) -> dict[str, Any]:
    pseudo = task in ("summarization", "region_qa")
    report = f"Heart size is normal. Case {n} has no pleural effusion."
    history = [] if task == "report_generation" else [
        {"role": "user", "content": "Image information: <IMG>. Write the findings."},
        {"role": "assistant", "content": report}]
    instruction = "Image information: <IMG>. Write the findings." if not history else f"Question {n} about {task}?"
    output = report if task == "report_generation" else f"Answer {n}."
    return {
        "sample_id": f"{n:016x}", "split": split, "task": task, "task_mode": "heart" if task == "region_qa" else None,
        "source": "mimic-cxr", "source_ref": None, "subject_id": 10_000_000 + n, "study_id": 50_000_000 + n,
        "dicom_id": f"dicom-{n}", "image_path": f"files/p10/p{10_000_000 + n}/s{50_000_000 + n}/dicom-{n}.jpg",
        "view_position": "PA", "structured_findings": None, "labeler": "rules", "history": history,
        "messages": history + [{"role": "user", "content": instruction}, {"role": "assistant", "content": output}],
        "instruction": instruction, "output": output, "context_mode": "full",
        "template_id": f"{task}/default#0@1", "is_pseudo_label": pseudo,
        "generation": {"backend": "transformers", "model": "m", "revision": "r", "sampling_params": "{}", "seed": 0,
                       "request_hash": f"h{n}", "finish_reason": "stop", "prompt_tokens": 10,
                       "completion_tokens": 5} if pseudo else None,
        "audit": {"verdict": "pass", "reasons": [], "source_findings": [], "output_findings": [], "kept": [],
                  "added": [], "dropped": [], "labeler": "rules"} if pseudo else None,
        "pipeline_version": "0.1.0",
    }


def shard_rows(split: str, start: int) -> Rows:
    tasks = [task for task, count in TASKS.items() for _ in range(count)]
    return [make_row(start + i, task, split) for i, task in enumerate(tasks)]


def good_version() -> dict[str, list[Rows]]:
    """split -> shards (each a list of rows)."""
    return {split: [shard_rows(split, 100 * i)] for i, split in enumerate(("train", "validate", "test"))}


def to_table(rows: Rows, schema: pa.Schema = schemas.INSTRUCT_SAMPLE) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=schema)


def write_version(root: Path, splits: dict[str, list[Rows | pa.Table]]) -> Path:
    """Shards and a manifest listing them, as the assemble stage writes them."""
    version_dir = root / "shards" / VERSION
    listed = {}
    for split, shards in splits.items():
        for i, shard in enumerate(shards):
            path = write_parquet(shard if isinstance(shard, pa.Table) else to_table(shard),
                                 version_dir / split / shard_name(i))
            rows = pq.ParquetFile(path).metadata.num_rows
            listed[f"{split}/{path.name}"] = {"sha256": sha256_file(path), "rows": rows}
    write_json({"version": VERSION, "audited": True, "shards": listed}, version_dir / "manifest.json")
    return version_dir


def failing(checks: list[dict[str, Any]]) -> set[str]:
    return {c["check"] for c in checks if not c["success"]}


def dataset_failing(report: dict[str, Any]) -> set[str]:
    return {check for suite in report["dataset"].values() for check in failing(suite["checks"])}


# --- one shard per defect ----------------------------------------------------------------------

Edit = Callable[[Rows], Rows | pa.Table]


def _set(i: int, **values: Any) -> Edit:
    def edit(rows: Rows) -> Rows:
        rows[i].update(copy.deepcopy(values))
        return rows
    return edit


def _answer(i: int, text: str) -> Edit:
    """Change output and the final assistant turn together."""
    def edit(rows: Rows) -> Rows:
        rows[i]["output"] = text
        rows[i]["messages"][-1]["content"] = text
        return rows
    return edit


def _messages(i: int, fn: Callable[[list], list]) -> Edit:
    def edit(rows: Rows) -> Rows:
        rows[i]["messages"] = fn(rows[i]["messages"])
        return rows
    return edit


def _nested(i: int, column: str, **values: Any) -> Edit:
    def edit(rows: Rows) -> Rows:
        rows[i][column].update(values)
        return rows
    return edit


def _same_id(src: int, dst: int) -> Edit:
    def edit(rows: Rows) -> Rows:
        rows[dst]["sample_id"] = rows[src]["sample_id"]
        return rows
    return edit


def _all(**values: Any) -> Edit:
    def edit(rows: Rows) -> Rows:
        return [{**r, **values} for r in rows]
    return edit


def _longer_instruction(i: int) -> Edit:
    def edit(rows: Rows) -> Rows:
        rows[i]["instruction"] += " and more" * 40
        return rows
    return edit


def _nulls(rows: Rows) -> pa.Table:
    rows[3]["instruction"] = None
    rows[5]["template_id"] = None
    return to_table(rows, NULLABLE)


def _missing_column_and_wrong_type(rows: Rows) -> pa.Table:
    table = to_table(rows).drop_columns(["template_id"])
    index = table.schema.get_field_index("subject_id")
    return table.set_column(index, "subject_id", table.column("subject_id").cast(pa.string()))


GENERATION = make_row(0, "region_qa", "test")["generation"]

#: defect -> (edit of one good shard's rows, the shard checks that must fail)
SHARD_DEFECTS: dict[str, tuple[Edit, set[str]]] = {
    "unknown task": (_set(5, task="findings_qa_v2"), {"task is known", "replay tasks are pseudo labels"}),
    "row in the wrong split folder": (_set(0, split="validate"), {"split matches the shard's folder"}),
    "unknown split": (_all(split="dev"), {"split is known", "split matches the shard's folder"}),
    "unknown context mode": (_set(4, context_mode="half"), {"context_mode is known"}),
    "duplicate sample_id": (_same_id(0, 1), {"sample_id unique in shard"}),
    "empty output": (_answer(4, ""), {"output length in bounds", "messages well formed"}),
    "whitespace-only answer": (_answer(4, " \u00a0\n\u2003 "), {"messages well formed"}),
    "overlong instruction": (_longer_instruction(5),
                             {"instruction length in bounds", "messages = history + instruction + answer"}),
    "two user turns in a row": (_messages(6, lambda m: m[:1] + m[2:]),
                                {"messages well formed", "messages = history + instruction + answer"}),
    "answer differs from output": (_set(7, output="Something else."), {"last answer equals output"}),
    "conversation ends with the question": (_messages(0, lambda m: m[:-1]),
                                            {"messages well formed", "last answer equals output",
                                             "messages = history + instruction + answer"}),
    "pseudo label without provenance": (_set(8, generation=None), {"generation provenance on pseudo-label rows"}),
    "provenance with a missing field": (_nested(9, "generation", request_hash=None),
                                        {"generation provenance on pseudo-label rows"}),
    "provenance on a ground-truth row": (_set(1, generation=GENERATION), {"no generation provenance on other rows"}),
    "replay row not marked pseudo": (_set(6, is_pseudo_label=False, generation=None, audit=None),
                                     {"replay tasks are pseudo labels"}),
    "ground-truth row marked pseudo": (_set(1, is_pseudo_label=True),
                                       {"pseudo labels only on replay tasks",
                                        "generation provenance on pseudo-label rows",
                                        "audit verdict on pseudo-label rows"}),
    "failed audit in the release": (_nested(7, "audit", verdict="fail"),
                                    {"no row that failed the audit unless a person accepted it"}),
    "rejected row in the release": (_set(8, review={"decision": "reject", "note": "wrong side", "reviewer": "r",
                                                    "decided_at": None, "audit_verdict": "pass"}),
                                    {"no row a person rejected"}),
    "nulls in required columns": (_nulls, {"instruction is set", "template_id is set",
                                           "messages = history + instruction + answer"}),
    "missing column and wrong type": (_missing_column_and_wrong_type,
                                      {"schema", "columns are the row contract's", "template_id is set"}),
}
DEFECT_SHARD = {case: f"train/{shard_name(i + 1)}" for i, case in enumerate(sorted(SHARD_DEFECTS))}


@pytest.fixture(scope="module")
def defects_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One version: a clean train shard, then one shard per defect (unique ids throughout)."""
    splits = good_version()
    for i, case in enumerate(sorted(SHARD_DEFECTS)):
        edit, _ = SHARD_DEFECTS[case]
        splits["train"].append(edit(shard_rows("train", 1000 * (i + 1))))
    root = tmp_path_factory.mktemp("defects")
    return validate_version(write_version(root, splits), CFG, exclude_failed_audit=True)


@pytest.mark.parametrize("case", sorted(SHARD_DEFECTS))
def test_broken_shard_is_caught(defects_report: dict[str, Any], case: str):
    shard = defects_report["shards"][DEFECT_SHARD[case]]
    found = failing(shard["checks"]) | ({"schema"} if shard["schema_problems"] else set())
    assert found == SHARD_DEFECTS[case][1]
    assert not shard["success"]
    assert any(line.startswith(DEFECT_SHARD[case] + ": ") for line in defects_report["failures"])


def test_clean_shard_next_to_broken_ones_passes(defects_report: dict[str, Any]):
    assert not defects_report["success"]
    assert defects_report["shards"]["train/part-00000.parquet"]["success"]
    assert defects_report["shards"]["test/part-00000.parquet"]["success"]


def test_failures_name_rows_and_schema_problems(defects_report: dict[str, Any]):
    shard = defects_report["shards"][DEFECT_SHARD["answer differs from output"]]
    (check,) = [c for c in shard["checks"] if not c["success"]]
    first_row = 1000 * (sorted(SHARD_DEFECTS).index("answer differs from output") + 1)
    assert check["unexpected_count"] == 1 and check["examples"] == [f"{first_row + 7:016x}"]
    missing = defects_report["shards"][DEFECT_SHARD["missing column and wrong type"]]
    assert missing["schema_problems"] == ["missing column template_id", "subject_id is string, expected int64"]



# --- defects across shards ---------------------------------------------------------------------

def test_duplicates_across_shards_study_in_two_splits_and_unlisted_shard(tmp_path: Path):
    splits = good_version()
    splits["test"][0][0]["sample_id"] = splits["train"][0][0]["sample_id"]
    splits["validate"][0][3]["study_id"] = splits["train"][0][2]["study_id"]
    version_dir = write_version(tmp_path, splits)
    write_parquet(to_table(shard_rows("test", 200)[:3]), version_dir / "test" / shard_name(1))
    report = validate_version(version_dir, CFG, exclude_failed_audit=True)
    assert all(s["success"] for s in report["shards"].values())
    assert dataset_failing(report) == {"sample_id unique across shards", "no study in two splits"}
    assert report["manifest_problems"] == ["test/part-00001.parquet: not in the manifest"]
    studies = [c for c in report["dataset"]["studies"]["checks"] if not c["success"]][0]
    assert studies["unexpected_count"] == 2


def test_counts_out_of_tolerance(tmp_path: Path):
    splits = good_version()
    splits["train"][0] += [make_row(900 + k, "report_generation", "train") for k in range(12)]
    splits["test"][0] = [r for r in splits["test"][0] if r["task"] != "region_qa"]
    report = validate_version(write_version(tmp_path, splits), CFG, exclude_failed_audit=True)
    assert dataset_failing(report) == {"share of report_generation per split in [0.3, 0.6]",
                                       "share of summarization per split in [0.1, 0.3]",
                                       "rows of region_qa per split >= 1"}
    counts = report["dataset"]["counts"]["checks"]
    by_check = {c["check"]: c for c in counts}
    assert by_check["rows of region_qa per split >= 1"]["examples"] == ["test/region_qa"]
    assert by_check["share of report_generation per split in [0.3, 0.6]"]["examples"] == ["train/report_generation"]


# --- the stage ---------------------------------------------------------------------------------

def test_stage_passes_on_good_shards(tmp_path: Path):
    write_version(tmp_path, good_version())
    wd = Workdir.at(tmp_path)
    summary = run_validate(PARAMS, wd)
    assert summary["success"] and summary["shards"] == 3 and summary["rows"] == 30
    report = json.loads(wd.report(REPORT_JSON).read_text())
    assert report["success"] and report["failures"] == []
    assert {r["gx"]["success"] for r in report["shards"].values()} == {True}
    json.dumps(report, allow_nan=False)
    assert "PASSED" in wd.report(REPORT_MD).read_text()


def test_stage_writes_reports_then_fails_naming_shard_and_check(tmp_path: Path):
    splits = good_version()
    splits["validate"][0][6]["output"] = "not the answer"
    write_version(tmp_path, splits)
    wd = Workdir.at(tmp_path)
    with pytest.raises(InputError) as err:
        run_validate(PARAMS, wd)
    message = str(err.value)
    assert "\n" not in message and message.startswith(str(wd.report(REPORT_MD)))
    assert f"validate/part-00000.parquet: last answer equals output (1 rows: {106:016x})" in message
    report = json.loads(wd.report(REPORT_JSON).read_text())
    assert report["success"] is False
    assert report["manifest_sha256"] == sha256_file(tmp_path / "shards" / VERSION / "manifest.json")
    markdown = wd.report(REPORT_MD).read_text()
    assert "FAILED" in markdown and "| validate/part-00000.parquet | 10 |" in markdown
