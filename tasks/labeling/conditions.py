"""The 14 CheXpert conditions, their orders in the different label files, and label values.

Value convention everywhere in the pipeline (CheXpert / CheXbert CSV convention):
1 = positive, 0 = negative, -1 = uncertain, null = not mentioned (blank).
"""

from __future__ import annotations

import numpy as np

#: CheXbert's model-head order (stanfordmlgroup/CheXbert ``src/constants.py``); No Finding last.
CONDITIONS: tuple[str, ...] = (
    "Enlarged Cardiomediastinum",
    "Cardiomegaly",
    "Lung Opacity",
    "Lung Lesion",
    "Edema",
    "Consolidation",
    "Pneumonia",
    "Atelectasis",
    "Pneumothorax",
    "Pleural Effusion",
    "Pleural Other",
    "Fracture",
    "Support Devices",
    "No Finding",
)

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

#: The 13 findings (everything but No Finding), in CheXbert order.
FINDINGS: tuple[str, ...] = CONDITIONS[:-1]

#: Order of RaDialog's ``positive_labels`` string (No Finding first, then CheXbert order).
RADIALOG_ORDER: tuple[str, ...] = (NO_FINDING,) + FINDINGS

#: Column order of MIMIC-CXR's mimic-cxr-2.0.0-chexpert.csv.gz / -negbio.csv.gz (alphabetical).
CSV_ORDER: tuple[str, ...] = tuple(sorted(CONDITIONS))

#: MIMIC-NLE's ten diagnosis classes, in its encoding order (alphabetical).
NLE_CLASSES: tuple[str, ...] = (
    "Atelectasis",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Lung Lesion",
    "Lung Opacity",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
)

POSITIVE, NEGATIVE, UNCERTAIN = 1, 0, -1

#: CheXbert head class index -> label value (0 blank, 1 positive, 2 negative, 3 uncertain).
CHEXBERT_CLASS_TO_VALUE: dict[int, float | None] = {0: None, 1: 1.0, 2: 0.0, 3: -1.0}


def column(condition: str) -> str:
    """Parquet column name of a condition, e.g. "Pleural Effusion" -> "pleural_effusion"."""
    return condition.lower().replace(" ", "_")


CONDITION_COLUMNS: tuple[str, ...] = tuple(column(c) for c in CONDITIONS)


#: How a condition reads inside a sentence, where the CheXpert label name does not.
_SPOKEN = {"Pleural Other": "other pleural abnormality"}


def spoken_name(condition: str) -> str:
    """Lower-cased condition name for free-text prompts ("Pleural Effusion" -> "pleural effusion")."""
    return _SPOKEN.get(condition, condition.lower())


#: Column of each RADIALOG_ORDER condition in a CONDITIONS-ordered label matrix.
RADIALOG_COLUMNS: tuple[int, ...] = tuple(CONDITIONS.index(c) for c in RADIALOG_ORDER)


def positive_conditions(values: np.ndarray) -> list[list[str]]:
    """Per row of an (n, 14) CONDITIONS-ordered label matrix, its positive conditions (value 1) in
    RADIALOG_ORDER, e.g. ``["Lung Opacity", "Pleural Effusion"]``."""
    positive = np.asarray(values)[:, RADIALOG_COLUMNS] == 1
    names = np.array(RADIALOG_ORDER, dtype=object)
    return [list(names[row]) for row in positive]


def structured_findings(positives: list[str]) -> str:
    """RaDialog's prompt string of positive findings: "Lung Opacity, Pleural Effusion" ("" when none)."""
    return ", ".join(positives)
