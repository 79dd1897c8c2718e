"""bench/original_style.py, the speed baseline, on a small scale corpus: it builds what RaDialog's v1
code builds - report-generation rows balanced to 1/14 no-finding, chat records with the report as
history, CheXpert QA answers that follow the labels, NLE sentences taken from their report
(about 5 s)."""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import pandas as pd
import pytest

from reference import REPO

sys.path.insert(0, str(REPO / "bench"))
import original_style  # noqa: E402  (a script folder, not a package)
import scale_corpus  # noqa: E402

SYSTEM = original_style.FORMAT.system


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, int]:
    corpus = tmp_path_factory.mktemp("corpus")
    scale_corpus.scale_corpus(corpus, studies=1000, images=1650)
    out = tmp_path_factory.mktemp("original")
    count = original_style.build(corpus, out, original_style.outputs_for(corpus))
    return corpus, out, count


def _records(out: Path, name: str) -> list[dict]:
    return json.loads((out / name).read_text())


def test_fused_file_is_rg_rows_plus_every_task_record(built):
    _, out, count = built
    fused = _records(out, "mimic_cxr_instruct_stratified.json")
    tasks = {p.stem.removeprefix("instruct_large_"): _records(out, p.name) for p in out.glob("instruct_large_*.json")}
    assert set(tasks) == {"easy_language", "summarization", "region_qa", "correction", "CPbQA", "CPaQA", "RE"}
    rg = [r for r in fused if r["instruction"].count("USER:") == 1]
    assert len(fused) == count == len(rg) + sum(map(len, tasks.values()))
    assert all(r["instruction"].startswith(SYSTEM) and r["instruction"].endswith("ASSISTANT:") for r in fused)
    # the replay parts are a sixth of the train images each, CPbQA and CPaQA a twelfth
    sizes = [len(tasks[t]) for t in ("easy_language", "summarization", "region_qa", "correction")]
    assert max(sizes) - min(sizes) <= 1 and len(tasks["CPbQA"]) == pytest.approx(sizes[0] / 2, abs=1)


def _labels_of(corpus: Path) -> pd.DataFrame:
    """The CheXpert labels of every image, indexed by dicom_id."""
    jpg = corpus / "mimic-cxr-jpg"
    labels = pd.read_csv(jpg / "mimic-cxr-2.0.0-chexpert.csv.gz").drop(columns="subject_id")
    meta = pd.read_csv(jpg / "mimic-cxr-2.0.0-metadata.csv.gz", usecols=["dicom_id", "study_id"])
    return meta.merge(labels, on="study_id").set_index("dicom_id")


def test_report_generation_rows_keep_one_in_fourteen_without_findings(built):
    corpus, out, _ = built
    labels = _labels_of(corpus)
    rg = [r for r in _records(out, "mimic_cxr_instruct_stratified.json") if r["instruction"].count("USER:") == 1]
    per_dicom = Counter(r["dicom"] for r in rg)
    rows = labels.loc[list(per_dicom)]
    normal = (rows["No Finding"] == 1) | ~(rows[original_style.LABELS] == 1).any(axis=1)
    assert {per_dicom[d] for d in rows.index[normal]} == {1}  # sampled, never duplicated
    assert {per_dicom[d] for d in rows.index[~normal]} == {2}  # two simulated epochs
    assert normal.sum() == int(2 * (~normal).sum() * 14 / 13 / 14) > 0


def test_task_answers_follow_labels_and_reports(built):
    corpus, out, _ = built
    labels = _labels_of(corpus)
    for record in _records(out, "instruct_large_CPaQA.json"):
        row = labels.loc[record["dicom"]]
        assert record["output"] == ", ".join(c for c in original_style.LABELS if row[c] == 1)
    binary = _records(out, "instruct_large_CPbQA.json")
    for record in binary:
        label = record["task"].removeprefix("Is there any ").removesuffix("?")
        assert record["output"] == ("yes" if labels.loc[record["dicom"], label] == 1 else "no")
    assert 0.2 < Counter(r["output"] for r in binary)["yes"] / len(binary) < 0.6  # 0.6 of those with a finding
    nle = _records(out, "instruct_large_RE.json")
    assert nle and all(r["output"] in r["gt_report"] for r in nle)
    fused = defaultdict(list)
    for r in _records(out, "mimic_cxr_instruct_stratified.json"):
        fused[r["dicom"], r["output"]].append(r["instruction"])
    for record in nle:  # the report is the history turn of the fused record
        history = f"ASSISTANT: {record['gt_report']}</s>USER: {record['task']} ASSISTANT:"
        assert any(i.endswith(history) for i in fused[record["dicom"], record["output"]])
