"""MIMIC-NLE from its query files and the MIMIC-CXR reports, as an explicit step of ``pull``.

MIMIC-NLE is published as query files (``{train,dev,test}-query.json``: sentence ids and labels,
no text) plus ``extract_mimic_nle.py``, which looks each ``s<study>#<index>`` up in the study's
report and writes ``mimic-nle-{train,dev,test}.json``. This does the same with the sentence
numbering the MIMIC-NLE loader uses (:func:`.mimic_nle.report_sentences`): every query record
gets ``nle``, ``report_ID`` and ``patient_ID`` appended (the original script's key order), and the
files are written as JSON lines.

Records that cannot be reconstructed are left out and counted: the study has no report, or the
report has fewer sentences than the index (a sentence splitter other than the authors' spaCy 2.3.5
can number sentences differently). The counts go to the pull summary.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io import write_text
from .mimic_cxr import iter_report_files
from .mimic_nle import NLE_SPLITS, iter_nle_file, report_sentences
from .report_parsing import parse_report_path

QUERY_FILE = "{split}-query.json"
OUTPUT_FILE = "mimic-nle-{split}.json"


def query_files(folder: Path) -> dict[str, Path]:
    """``{split: path}`` of the three query files in ``folder``; all three must be there."""
    found = {split: folder / QUERY_FILE.format(split=split) for split in NLE_SPLITS}
    missing = [path.name for path in found.values() if not path.is_file()]
    if missing:
        raise InputError(folder, f"missing MIMIC-NLE query file(s) {', '.join(missing)}",
                         expected="train-query.json, dev-query.json and test-query.json (MIMIC-NLE's mimic-nle/query/)")
    return found


def report_texts(reports: Path, studies: set[int]) -> dict[int, tuple[int, str]]:
    """``{study_id: (subject_id, raw text)}`` for the wanted studies, from the zip or the report tree."""
    found: dict[int, tuple[int, str]] = {}

    def wanted(rel: str) -> bool:  # every path is checked; only the wanted reports are read
        return parse_report_path(rel, f"{reports}!{rel}")[1] in studies

    for rel, data in iter_report_files(reports, wanted):
        subject, study = parse_report_path(rel, f"{reports}!{rel}")
        try:
            found[study] = (subject, data.decode("utf-8"))
        except UnicodeDecodeError as err:
            raise InputError(f"{reports}!{rel}", f"not UTF-8 text (byte {err.start})",
                             expected="a plain-text report") from None
    return found


def reconstruct_nle(query_dir: Path, reports: Path, out_dir: Path) -> dict[str, Any]:
    """Write ``mimic-nle-{split}.json`` into ``out_dir``; returns counts per split and the misses."""
    queries = query_files(query_dir)
    read = {split: list(iter_nle_file(path, split, is_query=True)) for split, path in queries.items()}
    studies = {checked["study_id"] for records in read.values() for _, checked in records}
    texts = report_texts(reports, studies)
    counts: dict[str, Any] = {"nle_records": 0, "nle_written": 0, "nle_report_missing": 0,
                              "nle_sentence_out_of_range": 0, "nle_missing_examples": []}
    sentences_of: dict[int, list[str]] = {}
    for split, records in read.items():
        lines = []
        for rec, checked in records:
            counts["nle_records"] += 1
            study, index = checked["study_id"], checked["sentence_index"]
            if study not in texts:
                _miss(counts, "nle_report_missing", rec["sentence_ID"])
                continue
            subject, text = texts[study]
            if study not in sentences_of:
                sentences_of[study] = report_sentences(text)
            if index >= len(sentences_of[study]):
                _miss(counts, "nle_sentence_out_of_range", rec["sentence_ID"])
                continue
            lines.append(json.dumps({**rec, "nle": sentences_of[study][index], "report_ID": f"s{study}",
                                     "patient_ID": f"p{subject}"}))
        write_text("".join(line + "\n" for line in lines), out_dir / OUTPUT_FILE.format(split=split))
        counts[f"nle_{split}"] = len(lines)
        counts["nle_written"] += len(lines)
    counts["nle_mismatches"] = counts["nle_report_missing"] + counts["nle_sentence_out_of_range"]
    return counts


def _miss(counts: dict[str, Any], key: str, sentence_id: str) -> None:
    counts[key] += 1
    if len(counts["nle_missing_examples"]) < 5:
        counts["nle_missing_examples"].append(sentence_id)
