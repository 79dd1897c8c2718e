"""End to end on the demo corpus: ingest, label (rules), plan, a generation cache, audit, assemble,
validate and release; then the audit report, the exclusions, the notebook, and ``verify`` on the
release folder, intact, tampered with, and with a phone number injected.

The generation cache is written by :mod:`fake_generator` instead of by the tiny random model, so
that the audit has both verdicts to give and the release holds pseudo labels.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct.tasks.config import load_params
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.instruct.plan import run_plan
from radialog_instruct.tasks.io import read_json, write_json
from radialog_instruct.tasks.labeling.stage import run_label
from radialog_instruct.tasks.quality.audit import run_audit
from radialog_instruct.tasks.quality.validate import run_validate
from radialog_instruct.tasks.release.physionet import (
    SUMS,
    checksum_lines,
    dataset_card,
    load_config,
    run_release,
    synthetic_sources,
    verify_release,
)
from radialog_instruct.tasks.storage.assemble import run_assemble

from fake_generator import write_generation_cache
from reference import RAD_RESTRUCT

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "browse_samples.ipynb"
#: the validate/audit/release settings proposed for params.yaml's demo (see the module docstring
#: of tasks/quality/expectations.py): shares loose enough for the demo's tiny corpus
SETTINGS = {
    "label": {"labeler": "rules"},
    "generate": {"model_preset": "vicuna-7b-v1.5", "model": "test/faithful-writer", "revision": "r1",
                 "backend": "transformers"},
    "audit": {"labeler": None},
    "validate": {"task_share": {"report_generation": [0.05, 0.6], "rad_restruct_qa": [0.2, 0.9]},
                 "min_rows": {"report_generation": 1, "findings_qa": 1, "rad_restruct_qa": 1}},
    "release": {"title": "MIMIC-CXR-Ext RaDialog-Instruct (demo)"},
}


@pytest.fixture(scope="module")
def demo(ingested_copy) -> dict[str, Any]:
    params = load_params(demo=True)
    for key, value in SETTINGS.items():
        params[key] = {**(params.get(key) or {}), **value}
    wd = ingested_copy("demo")
    run_label(params, wd)
    run_plan(params, wd)
    write_generation_cache(params, wd)
    summaries = {"audit": run_audit(params, wd), "assemble": run_assemble(params, wd),
                 "validate": run_validate(params, wd), "release": run_release(params, wd)}
    return {"params": params, "wd": wd, "summaries": summaries, "release": Path(summaries["release"]["folder"]),
            "shards": wd.shards(params["assemble"]["version"])}


def read_rows(folder: Path) -> list[dict[str, Any]]:
    files = sorted(folder.glob("part-*.parquet"))
    return pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []


# --- audit -------------------------------------------------------------------------------------

def test_audit_gives_both_verdicts_and_excludes_the_failures(demo: dict[str, Any]):
    audit = read_json(demo["wd"].report("audit-summary.json"))
    assert audit["rows"] == demo["summaries"]["audit"]["rows"] > 0
    assert 0 < audit["passed"] < audit["rows"]
    assert set(audit["tasks"]) == {"correction", "easy_language", "region_qa", "summarization"}
    assert {"echoed prompt", "empty output", "truncated", "added"} <= set(audit["reasons"])
    excluded = read_rows(demo["shards"] / "excluded")
    assert len(excluded) == audit["failed"]
    assert all(r["audit"]["verdict"] == "fail" and r["audit"]["reasons"] for r in excluded)
    released = [r for split in ("train", "validate", "test") for r in read_rows(demo["shards"] / split)]
    pseudo = [r for r in released if r["is_pseudo_label"]]
    assert len(pseudo) == audit["passed"]
    assert all(r["audit"]["verdict"] == "pass" and r["generation"]["model"] == "test/faithful-writer" for r in pseudo)


def test_audit_report_is_one_html_file_with_its_plots(demo: dict[str, Any]):
    html = demo["wd"].report("audit.html").read_text(encoding="utf-8")
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert [alt for alt, _ in images] == ["Audit verdicts per task", "Failure reasons per task",
                                         "Findings: source study vs. generated answer", "Answer lengths by verdict"]
    assert all(base64.b64decode(data).startswith(b"\x89PNG") for _, data in images)
    assert not re.search(r'(?:src|href)="(?!data:)', html)  # nothing to fetch
    for heading in ("Pass rates per task", "Findings: source vs. answer", "Examples per failure reason",
                    "echoed prompt", "truncated"):
        assert heading in html
    markdown = demo["wd"].report("audit.md").read_text(encoding="utf-8")
    assert "| region_qa |" in markdown and "- before: " in markdown and "- after: " in markdown


# --- validate and release ----------------------------------------------------------------------

def test_validation_passed_on_the_demo_shards(demo: dict[str, Any]):
    report = read_json(demo["wd"].report("validation.json"))
    assert report["success"] and demo["summaries"]["validate"]["shards"] == len(report["shards"]) == 3


def test_release_folder_layout_and_card(demo: dict[str, Any]):
    folder = demo["release"]
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["LICENSE.txt", "LICENSE_Rad-ReStruct.txt", "README.md", SUMS, "data/flat/test.json",
                     "data/flat/train.json", "data/flat/validate.json", "data/test/part-00000.parquet",
                     "data/train/part-00000.parquet", "data/validate/part-00000.parquet"]
    for split in ("train", "validate", "test"):
        shard = folder / "data" / split / "part-00000.parquet"
        assert shard.read_bytes() == (demo["shards"] / split / "part-00000.parquet").read_bytes()
        flat = json.loads((folder / "data" / "flat" / f"{split}.json").read_text())
        assert len(flat) == pq.ParquetFile(shard).metadata.num_rows
        assert set(flat[0]) == {"instruction", "input", "output", "dicom"}
        assert flat[0]["instruction"].endswith("ASSISTANT:")
    card = (folder / "README.md").read_text()
    manifest = read_json(demo["shards"] / "manifest.json")
    assert card.startswith("# MIMIC-CXR-Ext RaDialog-Instruct (demo)\n")
    assert f"| **all** |  | {manifest['rows_per_split']['train']} |" in card
    assert "test/faithful-writer" in card and "### Audit" in card and "| region_qa |" in card
    assert manifest["pipeline_version"] in card and f"`{manifest['config_hash']}`" in card
    assert "PhysioNet Credentialed Health Data License 1.5.0" in (folder / "LICENSE.txt").read_text()
    assert (folder / "LICENSE_Rad-ReStruct.txt").read_bytes() == (RAD_RESTRUCT.parents[1] / "LICENSE").read_bytes()
    sums = (folder / SUMS).read_text().splitlines()
    assert sums == checksum_lines(folder)
    assert [s.split(" ", 1)[1] for s in sums] == sorted(f for f in files if f != SUMS)


def test_release_folder_passes_verify(demo: dict[str, Any]):
    result = verify_release(demo["release"])
    assert result["phi_hits"] == 0 and result["files"] == 10


def test_release_states_each_source_and_its_terms(demo: dict[str, Any]):
    """Rad-ReStruct is built on IU X-ray (Open-i), not on MIMIC-CXR; each source has its own terms."""
    folder = demo["release"]
    licence, card = (folder / "LICENSE.txt").read_text(), (folder / "README.md").read_text()
    for text in (licence, card):
        assert "MIT licence of the Rad-ReStruct repository" in text and "not derived from MIMIC-CXR" in text
        assert "Indiana University chest X-ray collection" in text and "Open-i" in text
        assert "Demner-Fushman et al., 2016" in text and "MIMIC-NLE" in text
        assert not re.search(r"Rad-ReStruct[^.]*derived from MIMIC-CXR", text.replace("not derived", ""))
    assert card.index("## Sources and terms") < card.index("## Files")
    assert "Its prompts use this project's system prompt" in card  # the default is not the original format


def test_demo_release_says_it_is_synthetic(demo: dict[str, Any]):
    card = (demo["release"] / "README.md").read_text()
    banner = card.split("\n\n")[1]
    assert banner.startswith("> **Synthetic demo data.**")
    for source in ("MIMIC-CXR reports", "MIMIC-CXR-JPG tables", "MIMIC-NLE"):
        assert source in banner
    assert "Rad-ReStruct" not in banner  # the demo's Rad-ReStruct sample is the real one
    assert "synthetic demo corpus" in (demo["release"] / "LICENSE.txt").read_text()


def test_a_release_from_real_sources_has_no_synthetic_note(demo: dict[str, Any], tmp_path: Path):
    real = tmp_path / "mimic-cxr"
    real.mkdir()
    (real / "README.md").write_text("MIMIC-CXR reports\n")
    params = {"sources": {"mimic_cxr": {"reports": str(real), "jpg_root": str(real)},
                          "mimic_nle": {"dir": str(tmp_path / "absent")}}}
    assert synthetic_sources(params) == []
    assert synthetic_sources(demo["params"]) == ["MIMIC-CXR reports", "MIMIC-CXR-JPG tables", "MIMIC-NLE"]
    manifest = read_json(demo["shards"] / "manifest.json")
    card = dataset_card(load_config(demo["params"]), manifest, {"rows": 1}, None, [], synthetic_sources(params))
    assert "Synthetic" not in card and "synthetic" not in card


@pytest.fixture
def copy(demo: dict[str, Any], tmp_path: Path) -> Path:
    return Path(shutil.copytree(demo["release"], tmp_path / "v1"))


def rewrite_sums(folder: Path) -> None:
    (folder / SUMS).write_text("".join(line + "\n" for line in checksum_lines(folder)))


def test_verify_catches_a_tampered_file(copy: Path):
    shard = copy / "data" / "test" / "part-00000.parquet"
    data = bytearray(shard.read_bytes())
    data[100] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(InputError, match=r"data/test/part-00000\.parquet: sha256 differs from SHA256SUMS\.txt"):
        verify_release(copy)


def test_verify_catches_an_unlisted_or_badly_named_file(copy: Path):
    (copy / "notes from Jane.txt").write_text("draft")
    with pytest.raises(InputError, match="2 problem"):
        verify_release(copy)


def test_verify_catches_a_phone_number_in_the_flat_json(copy: Path):
    path = copy / "data" / "flat" / "validate.json"
    records = json.loads(path.read_text())
    records[1]["output"] += " Call me at 617-555-0143."
    path.write_text(json.dumps(records))
    rewrite_sums(copy)
    with pytest.raises(InputError, match=r"PHI scan found 1 hit\(s\); first: data/flat/validate\.json row 1 output: "
                                         r"phone number '999-999-9999'"):
        verify_release(copy)


def test_verify_catches_a_phone_number_in_a_shard(copy: Path):
    path = copy / "data" / "train" / "part-00000.parquet"
    table = pq.read_table(path)
    outputs = table.column("output").to_pylist()
    outputs[3] = "Findings discussed by phone, (617) 555-0143."
    pq.write_table(table.set_column(table.schema.get_field_index("output"), table.schema.field("output"),
                                    pa.array(outputs, pa.string())), path)
    rewrite_sums(copy)
    with pytest.raises(InputError, match=r"data/train/part-00000\.parquet row 3 output: phone number"):
        verify_release(copy)


def test_release_refuses_after_a_failed_validation(demo: dict[str, Any]):
    wd, params = demo["wd"], demo["params"]
    path = wd.report("validation.json")
    original = path.read_text()
    try:
        write_json({**json.loads(original), "success": False}, path)
        with pytest.raises(InputError, match="the validation failed"):
            run_release(params, wd)
        write_json({**json.loads(original), "manifest_sha256": "0" * 64}, path)
        with pytest.raises(InputError, match="other shards than the current ones"):
            run_release(params, wd)
    finally:
        path.write_text(original)
    assert verify_release(demo["release"])["phi_hits"] == 0  # the earlier release is untouched


# --- the notebook ------------------------------------------------------------------------------

def test_notebook_runs_top_to_bottom_on_the_demo(demo: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]):
    notebook = json.loads(NOTEBOOK.read_text(encoding="utf-8"))
    assert notebook["nbformat"] == 4
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    monkeypatch.setenv("RADIALOG_WORKDIR", str(demo["wd"].root))
    namespace: dict[str, Any] = {}
    for cell in code:
        exec(compile("".join(cell["source"]), f"{NOTEBOOK.name}:{cell['id']}", "exec"), namespace)
    audit = read_json(demo["wd"].report("audit-summary.json"))
    assert int(namespace["counts"]["total"].sum()) == len(namespace["samples"]) == demo["summaries"]["assemble"]["rows"]
    assert int(namespace["verdict_counts"].to_numpy().sum()) == audit["rows"]
    assert int(namespace["verdict_counts"]["fail"].sum()) == audit["failed"] == len(namespace["excluded"])
    assert set(namespace["reasons"].unique()) == set(audit["reasons"])
    printed = capsys.readouterr().out
    assert "=== report_generation" in printed and "[assistant]" in printed and "answer:" in printed
