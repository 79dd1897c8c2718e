"""Assemble on the demo: shards + manifest + exports, byte-identical rebuilds, consumers (HF
datasets, TRL) and the refusal to assemble with missing generations."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from radialog_instruct.schemas import INSTRUCT_SAMPLE
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.instruct.plan import run_plan
from radialog_instruct.tasks.io import sha256_file
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.quality.audit import run_audit
from radialog_instruct.tasks.storage.assemble import run_assemble
from radialog_instruct.tasks.storage.exports import export
from radialog_instruct.tasks.workdir import Workdir

pytestmark = pytest.mark.slow


def build(params: dict, wd: Workdir) -> dict:
    """The stages after ingest on a work dir that holds the demo ingest."""
    for stage in (run_label, run_plan, run_generate, run_audit):
        stage(params, wd)
    return run_assemble(params, wd)


@pytest.fixture(scope="module")
def assembled(ingested_copy, demo_params) -> tuple[Workdir, dict]:
    wd = ingested_copy("assembled")
    return wd, build(demo_params, wd)


def version_dir(wd: Workdir, params: dict) -> Path:
    return wd.shards(params["assemble"]["version"])


def test_shards_manifest_and_counts(assembled, demo_params):
    wd, summary = assembled
    folder = version_dir(wd, demo_params)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert set(manifest["shards"]) == {p.relative_to(folder).as_posix() for p in folder.rglob("*.parquet")}
    for rel, info in manifest["shards"].items():
        assert sha256_file(folder / rel) == info["sha256"]
        assert pq.ParquetFile(folder / rel).metadata.num_rows == info["rows"]
        assert pq.ParquetFile(folder / rel).schema_arrow.equals(INSTRUCT_SAMPLE)
    assert sum(i["rows"] for r, i in manifest["shards"].items() if not r.startswith("excluded/")) == manifest["rows"]
    assert manifest["rows_per_task"] == summary["rows_per_task"]
    assert set(manifest["rows_per_task"]) | set(manifest["excluded"]["per_task"]) >= {
        "report_generation", "impression_generation", "findings_qa", "rad_restruct_qa", "nle", "view_classification",
        "correction", "summarization", "easy_language", "region_qa"}
    assert manifest["generators"][0]["model"] == "demo-tiny"
    assert manifest["templates"]["summarization"]["version"] == "1"
    assert manifest["config_hash"] and manifest["pipeline_version"]


def test_excluded_rows_carry_their_audit_reason(assembled, demo_params):
    wd, _ = assembled
    excluded = pq.read_table(version_dir(wd, demo_params) / "excluded").to_pylist()
    assert excluded and all(r["audit"]["verdict"] == "fail" and r["audit"]["reasons"] for r in excluded)
    assert all(r["is_pseudo_label"] and r["generation"]["request_hash"] for r in excluded)


def test_two_builds_give_identical_bytes(assembled, demo_params, ingested_copy):
    wd, _ = assembled
    other = ingested_copy("again")
    build(demo_params, other)
    first, second = version_dir(wd, demo_params), version_dir(other, demo_params)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        assert (first / rel).read_bytes() == (second / rel).read_bytes(), rel
    exports = sorted(p.relative_to(wd.exports) for p in wd.exports.rglob("*.json"))
    assert len(exports) == 6  # two formats x three splits
    for rel in exports:
        assert (wd.exports / rel).read_bytes() == (other.exports / rel).read_bytes()


def test_shards_load_with_datasets_and_trl(assembled, demo_params):
    from datasets import load_dataset
    from trl.data_utils import is_conversational

    wd, _ = assembled
    folder = version_dir(wd, demo_params)
    data = load_dataset("parquet", data_files={s: str(folder / s / "*.parquet") for s in ("train", "validate")})
    assert data["train"].num_rows > 0 and "messages" in data["train"].column_names
    for example in data["train"]:
        assert is_conversational({"messages": example["messages"]})
        assert example["messages"][-1] == {"role": "assistant", "content": example["output"]}


def test_exports(assembled, demo_params):
    wd, _ = assembled
    version = demo_params["assemble"]["version"]
    llava = json.loads((wd.exports / version / "train" / "mimic_cxr_instruct_llava_v2.json").read_text())
    flat = json.loads((wd.exports / version / "train" / "mimic_cxr_instruct_stratified.json").read_text())
    manifest = json.loads((version_dir(wd, demo_params) / "manifest.json").read_text())
    assert len(llava) == len(flat) == manifest["rows_per_split"]["train"]
    record = next(r for r in llava if r["task_type"] == "RG")
    assert record["conversations"][0]["from"] == "human" and record["conversations"][0]["value"].startswith("<image>. ")
    assert record["image"].startswith("files/p1") and record["image"].endswith(f"{record['id']}.jpg")
    assert {r["task_type"] for r in llava} >= {"RG", "IG", "CPaQA", "CPbQA", "RR", "RE", "VC"}
    row = flat[0]
    assert set(row) == {"instruction", "input", "output", "dicom"} and row["instruction"].endswith("ASSISTANT:")


def test_parallel_export_gives_the_same_bytes(assembled, demo_params, tmp_path):
    """Shards converted by worker processes and joined give the in-process bytes; no part files stay."""
    wd, _ = assembled
    folder, splits = version_dir(wd, demo_params), ("train", "validate", "test", "excluded")
    outputs = {}
    for workers in (1, 2):
        targets = {kind: tmp_path / str(workers) / f"{kind}.json" for kind in ("llava", "flat")}
        count = export(targets, folder, splits, workers=workers)
        outputs[workers] = {kind: path.read_bytes() for kind, path in targets.items()}
        assert sorted(p.name for p in (tmp_path / str(workers)).iterdir()) == ["flat.json", "llava.json"]
    assert outputs[1] == outputs[2]
    rows = sum(pq.ParquetFile(p).metadata.num_rows for s in splits for p in (folder / s).glob("part-*.parquet"))
    assert count == rows == len(json.loads(outputs[2]["flat"])) == len(json.loads(outputs[2]["llava"]))
    empty = tmp_path / "empty.json"
    assert export({"flat": empty}, folder, ["no-such-split"]) == 0 and json.loads(empty.read_text()) == []


def test_missing_generations_are_an_error(assembled, demo_params, tmp_path):
    wd, _ = assembled
    copy = Workdir.at(tmp_path / "copy")
    shutil.copytree(wd.root, copy.root)
    for chunk in sorted((copy.cache / "generation").rglob("*.parquet"))[:1]:
        chunk.unlink()
    with pytest.raises(InputError, match=r"replay requests have no result"):
        run_assemble(demo_params, copy)
