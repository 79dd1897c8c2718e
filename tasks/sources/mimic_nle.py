"""MIMIC-NLE loader.

Reads the released JSON-lines files ``mimic-nle-{train,dev,test}.json`` (records with
``sentence_ID, nle, patient_ID, report_ID, diagnosis_label, evidence_label, img_labels``). Where
only the authors' query files ``{train,dev,test}-query.json`` exist (ids and labels, no text), the
NLE text is recovered from the MIMIC-CXR report the same way ``extract_mimic_nle.py`` does: the
findings and impression sections split into sentences, and the sentence at the id's index taken.

Each NLE is checked against its report: ``resolved`` says the sentence at ``sentence_index`` is the
NLE; ``in_findings`` says the NLE occurs in the findings section (both whitespace-normalised, which
fixes the original RaDialog code's whitespace mismatch).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa

from ...schemas import NLE
from ..errors import InputError
from ..labeling.conditions import NLE_CLASSES
from ..text.sentences import split_sentences
from .sections import clean, nle_report_text

NLE_SPLITS = {"train": "train", "dev": "validate", "test": "test"}
_SENTENCE_ID = re.compile(r"^s(\d{8})#(\d+)$")
_IMG_LABEL = {(1, 0, 0): 0, (0, 1, 0): -1, (0, 0, 1): 1}

def _decode_onehot(values: object, where: str, line: int, field: str) -> list[str]:
    if not isinstance(values, list) or len(values) != len(NLE_CLASSES) or any(v not in (0, 1) for v in values):
        raise InputError(where, f"{field} is not a 10-element 0/1 list", record=f"line {line}",
                         expected="one-hot over " + ", ".join(NLE_CLASSES))
    return [name for name, v in zip(NLE_CLASSES, values) if v == 1]


def _decode_img_labels(values: object, where: str, line: int) -> list[int]:
    try:
        return [_IMG_LABEL[tuple(v)] for v in values]  # type: ignore[union-attr]
    except (KeyError, TypeError):
        pass
    raise InputError(where, "img_labels is not a list of [negative, uncertain, positive] one-hots",
                     record=f"line {line}", expected="10 one-hot triples")


def find_nle_files(folder: Path) -> list[tuple[Path, str, bool]]:
    """(path, split, is_query) for every MIMIC-NLE file present in ``folder``."""
    if not folder.is_dir():
        raise InputError(folder, "MIMIC-NLE folder not found",
                         expected="a folder with mimic-nle-{train,dev,test}.json")
    found = []
    for name, split in NLE_SPLITS.items():
        full = folder / f"mimic-nle-{name}.json"
        query = folder / f"{name}-query.json"
        if full.exists():
            found.append((full, name, False))
        elif query.exists():
            found.append((query, name, True))
    if not found:
        raise InputError(folder, "no MIMIC-NLE files",
                         expected="mimic-nle-{train,dev,test}.json or {train,dev,test}-query.json")
    return found


def read_nle_file(path: Path, split: str, is_query: bool) -> list[dict]:
    return [record for _, record in iter_nle_file(path, split, is_query)]


def iter_nle_file(path: Path, split: str, is_query: bool) -> Iterator[tuple[dict, dict]]:
    """(the JSON object as read, its checked record) for each line of an NLE file; a malformed
    line is a one-line error."""
    required = ["sentence_ID", "diagnosis_label", "evidence_label", "img_labels"]
    if not is_query:
        required += ["nle", "patient_ID", "report_ID"]
    with open(path, encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(path, f"not valid JSON ({err.msg})", record=f"line {line_no}",
                                 expected="one JSON object per line") from None
            if not isinstance(rec, dict):
                raise InputError(path, "not a JSON object", record=f"line {line_no}")
            missing = [k for k in required if k not in rec]
            if missing:
                raise InputError(path, f"missing key(s) {', '.join(missing)}", record=f"line {line_no}",
                                 expected="keys " + ", ".join(required))
            match = _SENTENCE_ID.match(str(rec["sentence_ID"]))
            if match is None:
                raise InputError(path, f"bad sentence_ID {rec['sentence_ID']!r}", record=f"line {line_no}",
                                 expected='"s<8-digit study>#<index>"')
            study, index = int(match.group(1)), int(match.group(2))
            if not is_query:
                if rec["report_ID"] != f"s{study}":
                    raise InputError(path, f"report_ID {rec['report_ID']!r} does not match sentence_ID",
                                     record=f"line {line_no}")
                if not re.fullmatch(r"p\d{8}", str(rec["patient_ID"])):
                    raise InputError(path, f"bad patient_ID {rec['patient_ID']!r}", record=f"line {line_no}",
                                     expected='"p<8-digit subject>"')
            yield rec, {
                "sentence_id": rec["sentence_ID"],
                "study_id": study,
                "subject_id": int(rec["patient_ID"][1:]) if not is_query else None,
                "sentence_index": index,
                "nle": None if is_query else str(rec["nle"]),
                "nle_split": split,
                "diagnoses": _decode_onehot(rec["diagnosis_label"], str(path), line_no, "diagnosis_label"),
                "evidence": _decode_onehot(rec["evidence_label"], str(path), line_no, "evidence_label"),
                "img_labels": _decode_img_labels(rec["img_labels"], str(path), line_no),
                "text_source": "query+report" if is_query else "released",
            }


def report_sentences(raw_text: str) -> list[str]:
    """The numbered sentences MIMIC-NLE ids refer to."""
    return split_sentences(nle_report_text(raw_text))


def read_nle_records(folder: Path) -> pd.DataFrame:
    """All NLE records of the files in ``folder`` (text still missing for query files)."""
    records: list[dict] = []
    for path, split, is_query in find_nle_files(folder):
        records.extend(read_nle_file(path, split, is_query))
    frame = pd.DataFrame.from_records(records, columns=NLE.names[:-2])
    dup = frame["sentence_id"].duplicated()
    if dup.any():
        raise InputError(folder, f"sentence_ID {frame.loc[dup, 'sentence_id'].iloc[0]} appears twice",
                         expected="unique sentence ids across the NLE files")
    return frame


def resolve_against_reports(frame: pd.DataFrame, reports: pd.DataFrame,
                            sentences_of: dict[int, list[str]]) -> tuple[pa.Table, dict[str, int]]:
    """Fill missing NLE text from the reports and check every sentence id.

    ``reports`` is the ingested reports table (study_id, subject_id, findings); ``sentences_of`` maps
    study_id -> :func:`report_sentences` of its raw report, for the studies the NLE records refer to.
    """
    frame = frame.copy()
    study_ids = reports["study_id"].tolist()
    findings_of = dict(zip(study_ids, reports["findings"].tolist()))
    subject_of = dict(zip(study_ids, reports["subject_id"].tolist()))
    resolved, in_findings, nles, subjects = [], [], [], []
    for rec in frame.itertuples(index=False):
        sentences = sentences_of.get(rec.study_id)
        nle = rec.nle
        if nle is None and sentences is not None and rec.sentence_index < len(sentences):
            nle = sentences[rec.sentence_index]
        ok = (nle is not None and sentences is not None and rec.sentence_index < len(sentences)
              and clean(sentences[rec.sentence_index]) == clean(nle))
        findings = findings_of.get(rec.study_id)
        subject = rec.subject_id
        if subject is None or pd.isna(subject):
            subject = subject_of.get(rec.study_id)
        resolved.append(bool(ok))
        in_findings.append(bool(nle and findings and clean(nle) in findings))
        nles.append(nle)
        subjects.append(None if subject is None or pd.isna(subject) else int(subject))
    frame["nle"] = nles
    frame["subject_id"] = pd.array(subjects, dtype="Int64")
    frame["resolved"] = resolved
    frame["in_findings"] = in_findings
    frame = frame.sort_values("sentence_id", kind="stable").reset_index(drop=True)
    notes = {
        "nle_records": len(frame),
        "nle_report_missing": int((~frame["study_id"].isin(reports["study_id"])).sum()),
        "nle_unresolved": int((~frame["resolved"]).sum()),
        "nle_not_in_findings": int((~frame["in_findings"]).sum()),
    }
    return pa.Table.from_pandas(frame, schema=NLE, preserve_index=False), notes
