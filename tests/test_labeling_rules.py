"""The rule labeler: hand-written sentences for every condition (positive, negation, uncertainty,
double negation, pseudo-negation), report-level CheXpert rules, and agreement floors on the demo
corpus and on the independent hand-labelled gold set (bench/data/labeler_gold.csv)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radialog_instruct.tasks.labeling.conditions import CONDITIONS, column
from radialog_instruct.tasks.labeling.metrics import compare_labels
from radialog_instruct.tasks.labeling.rules import RuleLabeler

GOLD = Path(__file__).resolve().parents[1] / "bench" / "data" / "labeler_gold.csv"
NAN = float("nan")
EC, CM, LO, LL, ED, CO, PN, AT, PX, PE, PO, FR, SD, NF = CONDITIONS

SENTENCES = [
    # Enlarged Cardiomediastinum
    (EC, "The mediastinum is widened.", 1), (EC, "Mediastinal widening is again noted.", 1),
    (EC, "No mediastinal widening.", 0), (EC, "The cardiomediastinal silhouette is within normal limits.", 0),
    (EC, "Possible mediastinal widening, likely due to patient rotation.", -1),
    (EC, "Mediastinal widening cannot be excluded.", -1), (EC, "The mediastinal contours are unremarkable.", 0),
    (EC, "The cardiomediastinal and hilar contours are stable.", NAN),
    # Cardiomegaly
    (CM, "Moderate cardiomegaly is stable.", 1), (CM, "The heart is not enlarged.", 0),
    (CM, "Heart size is top normal.", 0), (CM, "Borderline cardiomegaly.", 1),
    (CM, "The heart is slightly large.", 1), (CM, "Possible borderline cardiomegaly.", -1),
    (CM, "The cardiac silhouette is enlarged.", 1), (CM, "Cardiomegaly cannot be excluded given low lung volumes.", -1),
    (CM, "Enlargement of the cardiac silhouette is unchanged.", 1),
    (CM, "Heart size is normal with small bilateral effusions.", 0),
    (CM, "Heart size is difficult to assess due to low lung volumes.", NAN),
    # Lung Opacity
    (LO, "There is a patchy opacity in the left lower lobe.", 1), (LO, "No focal opacity.", 0),
    (LO, "Hazy opacity at the right base may be due to overlying soft tissue.", -1),
    (LO, "Increased interstitial markings are noted.", 1), (LO, "Lungs are clear.", NAN),
    (LO, "Possible subtle opacity in the lingula.", -1), (LO, "No new airspace opacity.", 0),
    (LO, "There has been interval resolution of the left basilar opacity.", 0),
    # Lung Lesion
    (LL, "A 1.2 cm nodule in the right upper lobe is again seen.", 1),
    (LL, "No suspicious pulmonary nodules or masses.", 0),
    (LL, "Possible nodular opacity in the left mid lung, which could represent a nipple shadow.", -1),
    (LL, "A pulmonary mass cannot be excluded.", -1), (LL, "No evidence of mass effect.", NAN),
    (LL, "The small nodule is not well seen on this study.", -1),
    (LL, "Previously seen nodule not well seen on today's study.", -1),
    (LL, "Malignancy cannot be confidently excluded.", -1),
    # Edema
    (ED, "Mild pulmonary edema.", 1), (ED, "No pulmonary edema.", 0),
    (ED, "Mild pulmonary vascular congestion without frank edema.", 1), (ED, "Possible mild interstitial edema.", -1),
    (ED, "Pulmonary edema has resolved.", 0), (ED, "Findings suggestive of fluid overload.", -1),
    (ED, "Interval improvement in pulmonary edema.", 1), (ED, "Subcutaneous edema of the chest wall.", NAN),
    # vascular language takes the certainty and negation of its sentence
    (ED, "Correlate for pulmonary vascular congestion.", -1), (ED, "No pulmonary vascular congestion.", 0),
    (ED, "Pulmonary vascular congestion appears within normal limits.", 0),
    (ED, "Question of mild vascular congestion.", -1), (ED, "Cephalization is no longer seen.", 0),
    (ED, "Bronchovascular crowding, indistinct central vascular margination.", 1),
    (ED, "Cardiomegaly and pulmonary venous hypertension.", 1),
    (ED, "Pulmonary venous engorgement has developed.", 1),
    (ED, "A few septal lines at the left base.", NAN),  # a sign, no edema mention (CheXpert's list)
    # Consolidation
    (CO, "Left lower lobe consolidation.", 1), (CO, "No focal consolidation.", 0),
    (CO, "Consolidation at the right base cannot be excluded.", -1),
    (CO, "No consolidation, effusion or pneumothorax.", 0),
    # Pneumonia
    (PN, "Findings are concerning for pneumonia.", -1), (PN, "Right lower lobe pneumonia.", 1),
    (PN, "No evidence of pneumonia.", 0), (PN, "Pneumonia is not excluded.", -1),
    (PN, "Infection can't be ruled out.", -1), (PN, "No radiographic evidence to suggest pneumonia.", 0),
    (PN, "Right lower lobe pneumonia has improved but not resolved.", 1),
    (PN, "No focal airspace opacity to suggest pneumonia.", 0),
    # historical findings are not current ones
    (PN, "Calcified granulomas, sequelae of prior granulomatous infection.", NAN),
    (PN, "Evidence of old healed histoplasmosis infection.", NAN),
    (PN, "These were not present before and may be sequela of infection.", NAN),
    (PN, "Opacity suggesting a mass with postobstructive pneumonia.", -1),
    (PN, "Interval clearing of the right lower lobe pneumonia.", 0),
    # Atelectasis
    (AT, "Bibasilar atelectasis.", 1), (AT, "No atelectasis.", 0),
    (AT, "Opacity at the left base likely reflects atelectasis.", -1), (AT, "Right middle lobe collapse.", 1),
    (AT, "Mild bibasilar opacities, favoring atelectasis.", -1),
    (AT, "There is suggestion of minimal bibasilar atelectasis.", -1),
    (AT, "Compression deformity with collapse of a vertebral body.", NAN),
    # Pneumothorax
    (PX, "No pneumothorax.", 0), (PX, "Small right apical pneumothorax.", 1),
    (PX, "Tiny pneumothorax cannot be excluded.", -1), (PX, "The right pneumothorax has resolved.", 0),
    (PX, "No change in the small left pneumothorax.", 1), (PX, "The pneumothorax has resolved.", 0),
    (PX, "There is no interval increase in the size of the pneumothorax.", 1),
    (PX, "A visceral pleural line is seen at the apex, consistent with pneumothorax.", 1),
    (PX, "A large pleural air collection is present on the right.", 1), (PX, "No pleural air collections.", 0),
    (PX, "Almost completely resolved right apical pneumothorax.", 1), (PX, "Moderate right hemopneumothorax.", 1),
    # Pleural Effusion
    (PE, "Small bilateral pleural effusions.", 1), (PE, "No pleural effusion.", 0),
    (PE, "Possible trace left pleural effusion.", -1), (PE, "Blunting of the left costophrenic angle.", NAN),
    (PE, "Costophrenic angles are sharp.", 0), (PE, "A small effusion is not excluded.", -1),
    (PE, "Small pericardial effusion.", NAN), (PE, "The left effusion has nearly resolved.", 1),
    (PE, "No pneumothorax, but there is a small left effusion.", 1),
    (PE, "The previously noted right pleural effusion is no longer seen.", 0),
    (PE, "Moderate right hemopneumothorax.", 1), (PE, "Partial resolution of the right pleural effusion.", 1),
    # Pleural Other
    (PO, "Right apical pleural thickening.", 1), (PO, "No pleural thickening.", 0),
    (PO, "Calcified pleural plaques.", 1), (PO, "Possible pleural thickening at the left apex.", -1),
    (PO, "There is another pleural abnormality on the right.", 1),
    (PO, "No other pleural abnormality.", 0), (PO, "Minimal apical capping.", 1),
    (PO, "There is mild thickening in the fissure.", 1), (PO, "Fissural thickening.", 1),
    # Fracture
    (FR, "Healed left rib fractures.", 1), (FR, "No acute fracture.", 0),
    (FR, "Possible nondisplaced fracture of the right sixth rib.", -1), (FR, "A fracture cannot be excluded.", -1),
    (FR, "No displaced fracture is seen, but nondisplaced fractures cannot be excluded.", -1),
    # Support Devices
    (SD, "Endotracheal tube terminates 4 cm above the carina.", 1),
    (SD, "Interval removal of the nasogastric tube.", 0),
    (SD, "Left-sided pacemaker leads terminate in the right atrium and right ventricle.", 1),
    (SD, "Right IJ central venous catheter tip in the SVC.", 1), (SD, "Median sternotomy wires are intact.", 1),
    (SD, "No lines or tubes.", 0), (SD, "The chest tube has been removed.", 0),
    (SD, "A visceral pleural line is seen at the apex.", NAN),
    (SD, "No pneumothorax with a right chest tube in place.", 1),
]


@pytest.fixture(scope="module")
def labeler() -> RuleLabeler:
    return RuleLabeler()


def same(a: float, b: float) -> bool:
    return a == b or (np.isnan(a) and np.isnan(b))


def test_sentences(labeler: RuleLabeler):
    out = labeler.label([text for _, text, _ in SENTENCES])
    wrong = [f"{cond}: {text!r} -> {out[i, CONDITIONS.index(cond)]} (expected {want})"
             for i, (cond, text, want) in enumerate(SENTENCES) if not same(out[i, CONDITIONS.index(cond)], want)]
    assert not wrong, "\n".join(wrong)
    assert out.shape == (len(SENTENCES), 14) and out.dtype == np.float32


@pytest.mark.parametrize(("text", "expected"), [
    # the hedge belongs to the finding it modifies
    ("Left basilar opacity, likely atelectasis.", {LO: 1, AT: -1}),
    ("Atelectasis versus pneumonia at the left base.", {AT: -1, PN: -1}),
    ("Atelectasis rather than pneumonia at the left base.", {AT: 1, PN: 0}),
    ("Small effusions and/or atelectasis at the bases.", {PE: -1, AT: -1}),
    ("Streaky opacity compatible with scarring or atelectasis.", {LO: 1, AT: 1}),
    # a hedge on a location is no hedge on the finding
    ("Airspace disease, probably within the right lower lobe, consistent with pneumonia.", {LO: 1, PN: 1}),
    ("Airspace disease, probably pneumonia, within the right lower lobe.", {LO: 1, PN: -1}),
    # post-mention negation reaches its subject, not the next finding
    ("Heart size and pulmonary vascularity appear within normal limits.", {CM: 0}),
    ("Heart size and pulmonary vascular engorgement appear within normal limits.", {ED: 0}),
    ("The heart is enlarged and the lungs are normal.", {CM: 1}),
    # ... and reaches a long subject when no verb comes before it (NegBio: conjuncts of the subject)
    ("Consolidation, atelectasis, and costophrenic angle blunting in the left lower lobe have cleared in the "
     "interval.", {CO: 0, AT: 0}),
    ("Pneumonia seen on the CT examination of last month (not seen on the prior radiograph) is not seen on "
     "today's radiograph.", {PN: 0}),
    ("Mild cardiomegaly is again seen and the previously described left lower lobe consolidation has resolved.",
     {CM: 1, CO: 0}),
    # negation scope ends at the clause
    ("No pneumothorax; small left pleural effusion.", {PX: 0, PE: 1}),
    ("Pneumothorax is not seen, and there is a small effusion.", {PX: 0, PE: 1}),
    # double negation, and a double negation inside a negated sentence
    ("Cannot exclude a small right pneumothorax.", {PX: -1}),
    ("No definite consolidation, though pneumonia is not ruled out.", {CO: 0, PN: -1}),
    # aggregation: positive beats uncertain beats negative
    ("No left effusion. Small right effusion.", {PE: 1}),
    ("No consolidation on the right. Possible left lower lobe consolidation.", {CO: -1}),
])
def test_scope_and_aggregation(labeler: RuleLabeler, text: str, expected: dict[str, float]):
    row = labeler.label([text])[0]
    assert {c: float(row[CONDITIONS.index(c)]) for c in expected} == expected


def test_no_finding_rule(labeler: RuleLabeler):
    texts = [
        "Lungs are clear. No pleural effusion or pneumothorax. Heart size is normal.",   # negatives only
        "Endotracheal tube terminates 4 cm above the carina. Lungs are clear.",          # devices only
        "Small hiatal hernia. Degenerative changes of the spine.",                       # no CheXpert finding
        "Possible small left pleural effusion.",                                         # uncertain finding
        "Mild cardiomegaly.",                                                            # positive finding
        "",                                                                              # empty text
        "   ",
    ]
    out = labeler.label(texts)
    np.testing.assert_array_equal(out[:, CONDITIONS.index(NF)], [1, 1, 1, NAN, NAN, NAN, NAN])
    assert np.isnan(out[5:]).all()
    assert out[1, CONDITIONS.index(SD)] == 1


def chexpert_aggregate(rows: np.ndarray) -> np.ndarray:
    """Per column: positive if any row is, else uncertain, else negative, else blank."""
    rank = np.select([rows == 1, rows == -1, rows == 0], [3, 2, 1], 0).max(axis=0)
    return np.array([NAN, 0, -1, 1], dtype=np.float32)[rank]


def test_batch_order_duplicates_and_report_aggregation(labeler: RuleLabeler):
    texts = [text for _, text, _ in SENTENCES]
    one = labeler.label(texts)
    mixed = labeler.label(texts[::-1] + texts[:5])
    np.testing.assert_array_equal(mixed[:len(texts)][::-1], one)
    np.testing.assert_array_equal(mixed[len(texts):], one[:5])
    for lo in range(0, len(texts), 7):  # a report of several sentences aggregates their labels
        report = labeler.label([" ".join(texts[lo:lo + 7])])[0]
        np.testing.assert_array_equal(report[:13], chexpert_aggregate(one[lo:lo + 7, :13]))


def test_version_names_phrase_files(labeler: RuleLabeler):
    assert labeler.name == "rules"
    assert ".m" in labeler.version and ".c" in labeler.version and "+" in labeler.version


def test_demo_corpus_agreement(labeler: RuleLabeler, demo_workdir):
    reports = pd.read_parquet(demo_workdir.table("reports"))
    provided = pd.read_parquet(demo_workdir.table("chexpert_provided"))
    both = reports.merge(provided, on="study_id")
    both = both[both["findings"] != ""]
    result = compare_labels(labeler.label(both["findings"].tolist()),
                            both[[column(c) for c in CONDITIONS]].to_numpy(np.float32))
    assert result["n"] == len(both) > 250
    assert result["ce_macro_f1"] > 0.97
    assert all(row["positive"]["f1"] > 0.9 for row in result["per_condition"].values())


def test_gold_set_agreement(labeler: RuleLabeler):
    if not GOLD.exists():
        pytest.skip(f"{GOLD} not found")
    gold = pd.read_csv(GOLD)
    result = compare_labels(labeler.label(gold["report"].tolist()), gold[list(CONDITIONS)].to_numpy(np.float32))
    assert result["n"] == len(gold) >= 200
    assert result["ce_macro_f1"] > 0.95
    assert result["mean_agreement"] > 0.97
    for name, row in result["per_condition"].items():
        assert row["positive"]["f1"] > 0.85, name


#: The sample reports of stanfordmlgroup/chexpert-labeler (``sample_reports.csv``, MIT licence) with
#: the labels that repository publishes for them (``labeled_reports.csv``); unlisted = blank.
CHEXPERT_SAMPLES = [
    ("Heart size normal and lungs are clear. No edema or pneumonia. No effusion",
     {NF: 1, CM: 0, ED: 0, PN: 0, PE: 0}),
    ("1. Left pleural effusion with adjacent atelectasis. Right effusion is also present.\n\n"
     "2. Cardiomegaly without overt edema.", {CM: 1, ED: 0, AT: 1, PE: 1}),
    ("Minimal patchy airspace disease within the lingula, may reflect atelectasis or consolidation.",
     {LO: 1, CO: -1, AT: -1}),
    ("1. Stable mild cardiomegaly. 2. Hyperexpanded but clear lungs.", {CM: 1}),
]


def test_chexpert_labeler_sample_reports(labeler: RuleLabeler):
    out = labeler.label([text for text, _ in CHEXPERT_SAMPLES])
    for row, (text, published) in zip(out, CHEXPERT_SAMPLES):
        want = np.array([published.get(c, NAN) for c in CONDITIONS], np.float32)
        np.testing.assert_array_equal(row, want, err_msg=text)
