"""bench/scale_corpus.py on a small corpus: the CheXpert table it writes has MIMIC-CXR-JPG's
published label frequencies, and the reports say what the labels say (about 10 s)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from radialog_instruct.tasks.labeling.conditions import CSV_ORDER, NO_FINDING, SUPPORT_DEVICES
from radialog_instruct.tasks.sources.mimic_cxr import MimicCxrPaths, load_mimic_cxr

from reference import REPO

sys.path.insert(0, str(REPO / "bench"))
import scale_corpus  # noqa: E402  (a script folder, not a package)


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("scale")
    scale_corpus.scale_corpus(out, studies=4000, images=6600)
    return out


def test_label_frequencies_match_the_published_table(small_corpus: Path):
    labels = pd.read_csv(small_corpus / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz")
    published = scale_corpus.published_shares()
    assert list(labels.columns[2:]) == list(CSV_ORDER) and len(labels) == 4000
    for cond in CSV_ORDER:
        got = [(labels[cond] == value).mean() for value in (1, 0, -1)]
        want = published[cond]
        if cond == SUPPORT_DEVICES:  # the phrase bank cannot negate a device
            got, want = got[:1], want[:1]
        assert got == pytest.approx(want, abs=0.03), cond
    # positive share with a finding: MIMIC's 33% No Finding, not the demo mix's 28% normal studies
    assert (labels[NO_FINDING] == 1).mean() == pytest.approx(0.332, abs=0.03)
    recorded = json.loads((small_corpus / "SCALE.json").read_text())["label_shares"]
    assert recorded[NO_FINDING]["corpus"][0] == pytest.approx((labels[NO_FINDING] == 1).mean(), abs=1e-4)


def test_reports_say_what_the_labels_say(small_corpus: Path):
    """No Finding follows CheXpert's rule, and every positive pathology is stated in the report."""
    labels = pd.read_csv(small_corpus / "mimic-cxr-jpg" / "mimic-cxr-2.0.0-chexpert.csv.gz")
    pathologies = [c for c in CSV_ORDER if c not in (NO_FINDING, SUPPORT_DEVICES)]
    mentioned = labels[pathologies].isin([1, -1]).any(axis=1)
    assert ((labels[NO_FINDING] == 1) == ~mentioned).all()
    tables = load_mimic_cxr(MimicCxrPaths(small_corpus / "mimic-cxr", small_corpus / "mimic-cxr-jpg"))
    text = tables.reports.to_pandas().set_index("study_id")
    report = (text["findings"] + " " + text["impression"]).str.lower()
    effusions = labels.loc[labels["Pleural Effusion"] == 1, "study_id"]
    assert len(effusions) > 100 and report.loc[effusions].str.contains("effusion").all()
    assert tables.notes["images"] == pytest.approx(6600, abs=50)
