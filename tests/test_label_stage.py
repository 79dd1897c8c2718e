"""The label stage on the ingested demo corpus (rules, CheXbert on a tiny model, provided labels),
its comparison with the provided labels, the agreement metrics, and ``label-file``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct.schemas import LABELS
from radialog_instruct.tasks.errors import ConfigError, InputError
from radialog_instruct.tasks.io import write_parquet
from radialog_instruct.tasks.labeling.conditions import CONDITION_COLUMNS, CONDITIONS, RADIALOG_ORDER
from radialog_instruct.tasks.labeling.metrics import compare_labels
from radialog_instruct.tasks.labeling.stage import label_file, run_label, stage_spec
from radialog_instruct.tasks.models.tiny_bert import build_chexbert
from radialog_instruct.tasks.stage import is_fresh, record
from radialog_instruct.tasks.workdir import Workdir


def params(labeler: str = "rules", **chexbert: object) -> dict:
    return {"label": {"labeler": labeler, "text_column": "findings", "chexbert": dict(chexbert)}}


@pytest.fixture()
def wd(demo_workdir: Workdir, tmp_path: Path) -> Workdir:
    """A private copy of the ingested demo tables."""
    work = Workdir.at(tmp_path / "work")
    shutil.copytree(demo_workdir.interim, work.interim)
    return work


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, demo_workdir: Workdir):
    reports = pd.read_parquet(demo_workdir.table("reports"))
    return build_chexbert(tmp_path_factory.mktemp("tiny"), reports["findings"])


def test_rules_labels_table(wd: Workdir):
    summary = run_label(params(), wd)
    table = pq.read_table(wd.table("labels"))
    assert table.schema.equals(LABELS)
    labels = table.to_pandas()
    reports = pd.read_parquet(wd.table("reports")).sort_values("study_id")
    assert labels["study_id"].tolist() == reports["study_id"].tolist()
    assert labels["subject_id"].tolist() == reports["subject_id"].tolist()
    assert set(labels["labeler"]) == {"rules"} and set(labels["labeler_version"]) == {summary["labeler_version"]}
    empty = (reports["findings"] == "").to_numpy()
    assert empty.sum() > 0 and labels.loc[empty, list(CONDITION_COLUMNS)].isna().all().all()
    assert not labels.loc[~empty, "no_finding"].isna().all()
    values = labels[list(CONDITION_COLUMNS)].to_numpy()
    for row, positives, text in zip(values, labels["positive_findings"], labels["structured_findings"]):
        expected = [c for c in RADIALOG_ORDER if row[CONDITIONS.index(c)] == 1]
        assert list(positives) == expected and text == ", ".join(expected)
    assert any(", " in s for s in labels["structured_findings"]) and "" in set(labels["structured_findings"])
    assert summary["rows"] == len(reports) and summary["empty_texts"] == int(empty.sum())
    assert summary["labeled"] > 250 and summary["cache_hits"] == 0 and summary["texts_per_s"] > 0
    assert summary["positives"]["Pleural Effusion"] == int((values[:, CONDITIONS.index("Pleural Effusion")] == 1).sum())
    assert json.loads(wd.report("label-summary.json").read_text()) == summary

    again = run_label(params(), wd)
    assert again["labeled"] == 0 and again["cache_hits"] == int((~empty).sum())
    assert pq.read_table(wd.table("labels")).equals(table)


def test_compare_with_provided(wd: Workdir):
    result = run_label(params(), wd, compare=True)["compare"]
    assert json.loads(wd.report("label-compare.json").read_text()) == result
    reports = pd.read_parquet(wd.table("reports"))
    assert result["studies_compared"] == result["n"] == int((reports["findings"] != "").sum())
    assert result["studies_with_empty_text"] == int((reports["findings"] == "").sum())
    assert set(result["per_condition"]) == set(CONDITIONS)
    assert set(result["per_condition"]["Edema"]) == {"positive", "negative", "uncertain", "agreement"}
    assert result["ce_macro_f1"] > 0.95


def test_provided_labels(wd: Workdir):
    provided = pd.read_parquet(wd.table("chexpert_provided"))
    dropped = provided["study_id"].iloc[:5].tolist()
    write_parquet(pa.Table.from_pandas(provided.iloc[5:], preserve_index=False), wd.table("chexpert_provided"))
    summary = run_label(params("provided"), wd, compare=True)
    assert summary["studies_without_provided_labels"] == 5 and "skipped" in summary["compare"]
    labels = pd.read_parquet(wd.table("labels")).set_index("study_id")
    assert labels.loc[dropped, list(CONDITION_COLUMNS)].isna().all().all()
    kept = provided.iloc[5:].set_index("study_id")
    np.testing.assert_array_equal(labels.loc[kept.index, list(CONDITION_COLUMNS)].to_numpy(np.float32),
                                  kept[list(CONDITION_COLUMNS)].to_numpy(np.float32))
    assert labels["text_column"].isna().all() and set(labels["labeler"]) == {"provided"}

    write_parquet(pa.table({"study_id": pa.array([], pa.int64())}), wd.table("chexpert_provided"))
    with pytest.raises(InputError, match=r"chexpert_provided\.parquet: no provided CheXpert labels"):
        run_label(params("provided"), wd)
    assert "skipped" in run_label(params(), wd, compare=True)["compare"]


def test_chexbert_stage_and_stamp(wd: Workdir, tiny):
    settings = params("auto", checkpoint=str(tiny.checkpoint), encoder=str(tiny.encoder_dir), batch_size=16,
                      device="cpu")
    spec = stage_spec(settings, wd)
    assert tiny.checkpoint in spec.inputs and spec.key(wd)["extra"]["labeler"] == "chexbert"
    summary = run_label(settings, wd)
    assert summary["labeler"] == "chexbert" and "local checkpoint" in summary["reason"]
    labels = pd.read_parquet(wd.table("labels"))
    assert set(labels["labeler"]) == {"chexbert"} and labels["labeler_version"].iloc[0].endswith("float32")
    record(spec, wd, summary)
    assert is_fresh(stage_spec(settings, wd), wd)
    assert not is_fresh(stage_spec(params("rules"), wd), wd)


def test_bad_inputs(wd: Workdir, tmp_path: Path):
    with pytest.raises(ConfigError, match="label.text_column must be a report section"):
        run_label({"label": {"text_column": "report"}}, wd)
    with pytest.raises(ConfigError, match="label.labeler must be one of"):
        run_label({"label": {"labeler": "chexpert"}}, wd)
    wd.table("reports").unlink()
    with pytest.raises(InputError, match=r"reports\.parquet: file not found"):
        run_label(params(), wd)


def test_label_file(tmp_path: Path):
    src = tmp_path / "in.csv"
    pd.DataFrame({"id": [1, 2, 3, 4], "report": ["No pneumothorax. Small left pleural effusion.",
                                                 "", "Possible pneumonia.", "NA"]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    summary = label_file(src, "report", out, "rules")
    assert summary["rows"] == 4 and summary["labeler"] == "rules"
    lines = out.read_text().splitlines()
    assert lines[0] == "report," + ",".join(CONDITIONS)
    got = pd.read_csv(out, keep_default_na=False, dtype=str)
    assert got["report"].tolist()[3] == "NA"
    first = dict(zip(CONDITIONS, got.iloc[0, 1:]))
    assert (first["Pneumothorax"], first["Pleural Effusion"], first["Pneumonia"]) == ("0", "1", "")
    assert set(got.iloc[1, 1:]) == {""} and got.iloc[2]["Pneumonia"] == "-1" and got.iloc[3]["No Finding"] == "1"


def test_label_file_errors(tmp_path: Path):
    src = tmp_path / "in.csv"
    src.write_text("id,text\n1,No effusion.\n")
    with pytest.raises(InputError, match=r"in\.csv: no column 'report' \(columns: id, text\)"):
        label_file(src, "report", tmp_path / "out.csv", "rules")
    with pytest.raises(InputError, match=r"missing\.csv: file not found"):
        label_file(tmp_path / "missing.csv", "report", tmp_path / "out.csv", "rules")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv: not a readable CSV"):
        label_file(tmp_path / "empty.csv", "report", tmp_path / "out.csv", "rules")
    with pytest.raises(ConfigError, match="provided labels belong to MIMIC studies"):
        label_file(src, "text", tmp_path / "out.csv", "provided")
    assert not (tmp_path / "out.csv").exists()


def test_compare_labels_metrics():
    nan = np.nan
    ref = np.array([[1, 0, -1, nan] + [nan] * 10, [1, 1, 0, 0] + [nan] * 10, [0, nan, -1, 1] + [nan] * 10])
    pred = np.array([[1, 0, 0, nan] + [nan] * 10, [nan, 1, 0, 1] + [nan] * 10, [0, 1, -1, 1] + [nan] * 10])
    result = compare_labels(pred, ref)
    ec, cm = result["per_condition"][CONDITIONS[0]], result["per_condition"][CONDITIONS[1]]
    assert ec["positive"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2,
                              "predicted": 1}
    assert ec["negative"]["f1"] == 1.0 and ec["agreement"] == pytest.approx(2 / 3)
    assert cm["positive"]["precision"] == 0.5 and cm["positive"]["recall"] == 1.0
    assert result["per_condition"][CONDITIONS[2]]["uncertain"]["recall"] == 0.5
    assert result["per_condition"][CONDITIONS[5]]["positive"]["f1"] is None  # never positive: undefined
    # CE: blank/uncertain -> 0, undefined F1 -> 0, macro over 14
    assert result["ce_macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 0 + 2 / 3) / 14)
    with pytest.raises(ValueError, match="must both be"):
        compare_labels(pred[:, :13], ref[:, :13])
