"""Real reports with a reference: the IU X-ray (Open-i) collection's manual index terms as CheXpert
positives, for measuring text labelers on real radiology language.

The collection's ``reports.csv`` (``../shared/data/iu-xray-dev``) holds ``findings`` and
``impression`` of each report and its index terms in ``MeSH``: ``;``-separated terms, each a heading
with ``/``-separated qualifiers (``Cardiac Shadow/enlarged/mild``); ``normal`` when nothing was
indexed, ``No Indexing`` when the report was not indexed at all (those rows are dropped).

The indexers recorded what a report calls present: a term is a positive, its absence says nothing
about negative or uncertain. So the reference has 1 (indexed) or blank, and a labeler is scored on
its positives. :data:`TERM_MAP` maps headings to conditions, following CheXpert's own mention lists
(stanfordmlgroup/chexpert-labeler ``phrases/mention``):

* Atelectasis: Pulmonary Atelectasis.
* Cardiomegaly: Cardiomegaly; Cardiac Shadow qualified ``enlarged``.
* Consolidation: Consolidation.
* Edema: Pulmonary Edema, Pulmonary Congestion, Heart Failure (CheXpert counts "vascular
  congestion", "heart failure" and "chf" as edema mentions).
* Pleural Effusion: Pleural Effusion, Hydropneumothorax, Hemothorax, Hemopneumothorax (fluid in the
  pleural space). Costophrenic Angle ``blunted`` is a separate term and not mapped: CheXpert does not
  take blunting for an effusion.
* Pneumonia: Pneumonia.
* Pneumothorax: Pneumothorax, Hydropneumothorax, Hemopneumothorax.
* Enlarged Cardiomediastinum: Mediastinum qualified ``enlarged``, ``prominent`` or ``widened``
  without a lymph-node qualifier.
* Lung Opacity: Opacity, Airspace Disease, Infiltrate; Density with a ``lung`` qualifier.
* Lung Lesion: Nodule, Mass (granulomas are not lesions for CheXpert).
* Pleural Other: Thickening or Cicatrix qualified ``pleura``; Pleura.
* Fracture: Fractures, Bone.
* Support Devices: Catheters, Indwelling; Tube, Inserted; Implanted Medical Device; Medical Device;
  Stents; Surgical Instruments (the collection's term for sternotomy wires and surgical clips).
* No Finding: the report's terms are exactly ``normal``.

The seven conditions the issue scores (:data:`SCORED`) map one to one or nearly; the other six are
looser (the index vocabulary splits them differently) and are reported for information only.

Where the indexers and the CheXpert convention part (measured on the dev set; left as they are,
since the labeler follows CheXpert and the pipeline's prompts, not this index):

* Hedged findings are often indexed: "atelectasis versus infiltrate" and "effusions and/or
  atelectasis" index every alternative, "probable", "suggestive of" and "probably representing"
  findings are indexed. CheXpert calls them uncertain, which the score counts as not positive: this
  is almost every remaining false negative of Atelectasis, Pleural Effusion, Pneumothorax and
  Pneumonia.
* "Infection", "infectious process" and "infectious etiology" are Pneumonia mentions for CheXpert;
  the index has no heading for them and codes such reports with Opacity, Infiltrate or Airspace
  Disease only (most Pneumonia false positives).
* ``Cardiac Shadow/borderline`` is not mapped, but "borderline enlarged" and "borderline
  cardiomegaly" are positive for the labeler, as for CheXpert (CheXpert's one exception, "borderline
  heart size" as uncertain, was tried: it helped one half of the dev set and hurt the other).
* De-identification replaced words with ``XXXX``, most often "likely" ("most XXXX representing
  atelectasis", "opacities, XXXX atelectasis") and sometimes a noun ("pulmonary XXXX are engorged").
  The labeler reads ``XXXX`` as an unknown word: no hedge, no mention.
* A few reports carry dictation slips ("The lungs focal airspace consolidation" with "without"
  missing, "pleural fusion") or an index term the text does not support ("The heart size is normal"
  indexed Cardiomegaly); these stay errors.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import InputError
from .conditions import CONDITIONS, NO_FINDING
from .metrics import binary_scores

#: The conditions scored on the dev set (those the issue's independent gold shares with CheXpert).
SCORED: tuple[str, ...] = ("Atelectasis", "Cardiomegaly", "Pleural Effusion", "Pneumonia", "Pneumothorax",
                           "Consolidation", "Edema")

#: heading -> (condition, qualifiers of which one is required (empty: any), qualifiers that veto).
TERM_MAP: dict[str, list[tuple[str, frozenset[str], frozenset[str]]]] = {}


def _term(heading: str, condition: str, require: tuple[str, ...] = (), veto: tuple[str, ...] = ()) -> None:
    TERM_MAP.setdefault(heading, []).append((condition, frozenset(require), frozenset(veto)))


_term("Pulmonary Atelectasis", "Atelectasis")
_term("Cardiomegaly", "Cardiomegaly")
_term("Cardiac Shadow", "Cardiomegaly", ("enlarged",))
_term("Consolidation", "Consolidation")
for _heading in ("Pulmonary Edema", "Pulmonary Congestion", "Heart Failure"):
    _term(_heading, "Edema")
for _heading in ("Pleural Effusion", "Hydropneumothorax", "Hemothorax", "Hemopneumothorax"):
    _term(_heading, "Pleural Effusion")
_term("Pneumonia", "Pneumonia")
for _heading in ("Pneumothorax", "Hydropneumothorax", "Hemopneumothorax"):
    _term(_heading, "Pneumothorax")
_term("Mediastinum", "Enlarged Cardiomediastinum", ("enlarged", "prominent", "widened"), ("lymph nodes",))
for _heading in ("Opacity", "Airspace Disease", "Infiltrate"):
    _term(_heading, "Lung Opacity")
_term("Density", "Lung Opacity", ("lung",))
_term("Nodule", "Lung Lesion")
_term("Mass", "Lung Lesion")
_term("Thickening", "Pleural Other", ("pleura",))
_term("Cicatrix", "Pleural Other", ("pleura",))
_term("Pleura", "Pleural Other")
_term("Fractures, Bone", "Fracture")
for _heading in ("Catheters, Indwelling", "Tube, Inserted", "Implanted Medical Device", "Medical Device", "Stents",
                 "Surgical Instruments"):
    _term(_heading, "Support Devices")

NORMAL, NOT_INDEXED = "normal", "No Indexing"


def conditions_of(mesh: str) -> set[str]:
    """CheXpert conditions of one ``MeSH`` cell (No Finding for ``normal``)."""
    terms = [t.strip() for t in mesh.split(";") if t.strip()]
    if [t.lower() for t in terms] == [NORMAL]:
        return {NO_FINDING}
    found = set()
    for term in terms:
        heading, *qualifiers = (part.strip() for part in term.split("/"))
        quals = {q.lower() for q in qualifiers}
        for condition, require, veto in TERM_MAP.get(heading, ()):
            if (not require or quals & require) and not quals & veto:
                found.add(condition)
    return found


@dataclass(frozen=True)
class IndexedReports:
    uid: list[str]
    text: list[str]         # findings and impression, one string
    reference: np.ndarray   # (n, 14) float32 in CONDITIONS order: 1 indexed, NaN otherwise


def report_text(findings: str, impression: str) -> str:
    """What a labeler reads: the findings, then the impression (both were indexed)."""
    return " ".join(part.strip() for part in (findings, impression) if part and part.strip())


def load_indexed_reports(path: str | Path) -> IndexedReports:
    """The indexed reports of an IU X-ray ``reports.csv`` (rows marked ``No Indexing`` dropped)."""
    path = Path(path)
    expected = "the IU X-ray reports.csv with columns uid, MeSH, findings and impression"
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(path, "file not found", expected=expected) from None
    missing = [c for c in ("uid", "MeSH", "findings", "impression") if c not in frame.columns]
    if missing:
        raise InputError(path, f"missing column(s) {', '.join(missing)}", expected=expected)
    frame = frame[frame["MeSH"].str.strip() != NOT_INDEXED].reset_index(drop=True)
    reference = np.full((len(frame), len(CONDITIONS)), np.nan, dtype=np.float32)
    for i, mesh in enumerate(frame["MeSH"]):
        for condition in conditions_of(mesh):
            reference[i, CONDITIONS.index(condition)] = 1.0
    texts = [report_text(f, i) for f, i in zip(frame["findings"], frame["impression"])]
    return IndexedReports(frame["uid"].tolist(), texts, reference)


def halves(uids: Sequence[str]) -> np.ndarray:
    """A fixed 2-fold split of the reports (0/1 per uid: the low bit of the first byte of the uid's
    SHA-256). Labeler changes are checked on both halves, so that a gain on one is no loss on the other."""
    return np.array([hashlib.sha256(u.encode()).digest()[0] & 1 for u in uids], dtype=np.int8)


def score_positives(pred: np.ndarray, reference: np.ndarray, conditions: tuple[str, ...] = SCORED, *,
                    uncertain_positive: bool = False) -> dict[str, Any]:
    """Per-condition precision / recall / F1 of the labeler's positives against the indexed ones,
    and their macro-F1 over ``conditions`` (an undefined F1 counts as 0).

    Uncertain (-1) counts as not positive unless ``uncertain_positive`` (RaDialog's clinical-efficacy
    mapping, which is also what the pipeline passes on: prompts list positive findings only)."""
    per = {}
    for name in conditions:
        j = CONDITIONS.index(name)
        said = (pred[:, j] == 1) | (uncertain_positive & (pred[:, j] == -1))
        per[name] = binary_scores(said, reference[:, j] == 1)
    return {"n": int(len(pred)), "uncertain_positive": uncertain_positive,
            "macro_f1": float(np.mean([s["f1"] or 0.0 for s in per.values()])), "per_condition": per}
