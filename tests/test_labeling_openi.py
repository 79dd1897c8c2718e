"""The rule labeler on real reports: the IU X-ray dev set's index terms mapped to CheXpert
(:mod:`tasks.labeling.openi`), the score floors of issue 13 as a regression guard, and
``label-file`` on the real reports CSV."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.labeling.conditions import CONDITIONS
from radialog_instruct.tasks.labeling.openi import SCORED, conditions_of, halves, load_indexed_reports, score_positives
from radialog_instruct.tasks.labeling.rules import RuleLabeler
from radialog_instruct.tasks.labeling.stage import label_file

from reference import shared_data


@pytest.fixture(scope="module")
def dev_csv() -> Path:
    path = shared_data() / "iu-xray-dev" / "reports.csv"
    if not path.exists():
        pytest.skip(f"IU X-ray dev set not found at {path} (set RADIALOG_REFERENCE_DATA)")
    return path


@pytest.mark.parametrize("mesh, expected", [
    ("Cardiac Shadow/enlarged/mild;Pulmonary Congestion/mild", {"Cardiomegaly", "Edema"}),
    ("Cardiac Shadow/borderline", set()),
    ("Pulmonary Atelectasis/base/left;Calcified Granuloma/lung/upper lobe/right", {"Atelectasis"}),
    ("Costophrenic Angle/left/blunted", set()),
    ("Hydropneumothorax/left/large", {"Pneumothorax", "Pleural Effusion"}),
    ("Mediastinum/prominent", {"Enlarged Cardiomediastinum"}),
    ("Mediastinum/lymph nodes/enlarged", set()),
    ("Thickening/pleura/apex/right;Density/lung/lingula", {"Pleural Other", "Lung Opacity"}),
    ("Catheters, Indwelling/right;Heart Failure", {"Support Devices", "Edema"}),
    ("normal", {"No Finding"}),
])
def test_index_terms_map_to_chexpert(mesh: str, expected: set[str]):
    assert conditions_of(mesh) == expected


def test_loader_drops_unindexed_reports(tmp_path: Path):
    src = tmp_path / "reports.csv"
    pd.DataFrame({"uid": ["1", "3", "5"], "MeSH": ["normal", "No Indexing", "Pneumonia/lung/base/right"],
                  "findings": ["Lungs are clear.", "", "Right basilar pneumonia."],
                  "impression": ["No acute disease.", "Normal.", ""]}).to_csv(src, index=False)
    dev = load_indexed_reports(src)
    assert dev.uid == ["1", "5"]
    assert dev.text == ["Lungs are clear. No acute disease.", "Right basilar pneumonia."]
    assert dev.reference[0, CONDITIONS.index("No Finding")] == 1 and np.isnan(dev.reference[0, :13]).all()
    assert dev.reference[1, CONDITIONS.index("Pneumonia")] == 1
    pd.DataFrame({"uid": ["1"], "findings": ["x"]}).to_csv(src, index=False)
    with pytest.raises(InputError, match=r"reports\.csv: missing column\(s\) MeSH, impression"):
        load_indexed_reports(src)


def test_dev_set_scores(dev_csv: Path):
    """Issue 13's floors on the real dev set: macro-F1 over the seven shared conditions >= 0.90
    (guarded at 0.92: the labeler reaches 0.936), each >= 0.80 (positive = 1; uncertain is not
    positive)."""
    dev = load_indexed_reports(dev_csv)
    assert len(dev.text) == 1880
    result = score_positives(RuleLabeler().label(dev.text), dev.reference)
    per = {c: round(s["f1"], 3) for c, s in result["per_condition"].items()}
    assert set(per) == set(SCORED)
    assert result["macro_f1"] >= 0.92, per
    assert all(f1 >= 0.80 for f1 in per.values()), per
    # the fixed halves the figures in bench/README.md were checked on
    assert np.bincount(halves(dev.uid)).tolist() == [960, 920]


def test_label_file_on_real_reports(dev_csv: Path, tmp_path: Path):
    frame = pd.read_csv(dev_csv, dtype=str, keep_default_na=False)
    frame = frame[["uid", "findings"]].rename(columns={"findings": "report"})
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    frame.to_csv(src, index=False)
    summary = label_file(src, "report", out, "rules")
    got = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert summary["rows"] == len(got) == len(frame) == 1924
    assert got.columns.tolist() == ["report", *CONDITIONS]
    assert got["report"].tolist() == frame["report"].tolist()  # input order, text as given
    assert set(np.unique(got[list(CONDITIONS)].to_numpy())) <= {"1", "0", "-1", ""}
    empty = frame["report"].str.strip() == ""
    assert empty.any() and (got.loc[empty, list(CONDITIONS)] == "").all().all()
    silent = ~frame["report"].str.contains("pneumothora|pleural air", case=False)
    assert (got.loc[silent, "Pneumothorax"] == "").all()  # blank where not mentioned
    assert (got.loc[~silent & ~empty, "Pneumothorax"] != "").all()
