"""PHI scan of the text a release publishes.

MIMIC-CXR replaces protected health information by ``___``; anything that still looks like PHI in
an instruction, answer or conversation turn is a leak (or a generator hallucinating one) and fails
the release. Scanned: the text columns of the Parquet shards (``instruction``, ``output``, the
``content`` of every ``messages`` turn, which include the history) and every string of the JSON
exports except the id fields (``id``, ``image``, ``dicom``). Identifier columns (subject, study and
DICOM ids, image paths) are expected and not scanned.

Patterns (kept narrow so that radiology text does not trip them; see :data:`PATTERNS`): dates
(``01/02/2019``, ``2019-01-02``, ``January 2, 2019``, ``2 Jan 2019``), phone numbers
(``(617) 555-0100``, ``617-555-0100``, ``555-0100``), e-mail addresses, MRN-like numbers (runs of
7+ digits, or digits after "MRN" / "medical record number"), and person names: a capitalised
word after Dr/Mr/Mrs/Ms/Miss/Prof (``Dr. ___`` is a mask and passes), or a capitalised pair after a
notification phrase ("discussed with John Smith", "paged Jane Doe"), unless one of the words is a
role or department ("the Emergency Department"). Times ("10:30") are not flagged: reports carry
them as ``___`` and real ones are not identifying on their own.

Hits report file, row, field, kind and position, and the matched text's shape only (digits -> 9,
letters -> x/X), so that the scan itself never copies PHI into logs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

PARQUET_TEXT_COLUMNS = ("instruction", "output", "messages")
JSON_ID_FIELDS = frozenset({"id", "image", "dicom"})

_MONTH = (r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
          r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)")
_YEAR = r"(?:19|20)\d{2}"
_NOT_NAMES = ("Emergency|Department|Radiology|Radiologist|Surgery|Surgical|Medicine|Medical|Intensive|Care|Unit|"
              "Team|Service|Nurse|Nursing|Physician|Resident|Attending|Fellow|Clinic|Floor|Ward|Office|Staff|"
              "Provider|House|Officer|Doctor|Technologist|Referring|Covering|Primary|Oncology|Cardiology|"
              "Pulmonary|Thoracic|Trauma|Transplant|Hospital|Center|Chest|Interventional|Vascular|Critical")
_CAPITALISED = rf"(?!(?:{_NOT_NAMES}|Dr|Mr|Mrs|Ms|The)\b)[A-Z][a-z]*(?:'[A-Z])?[a-z]+(?:-[A-Z][a-z]+)?"
#: Phrases after which a capitalised pair is taken for a name (lower case).
NOTIFICATION = ("discussed with", "spoke with", "spoke to", "notified", "informed", "paged", "telephoned",
                "communicated to", "communicated with", "reported to", "reviewed with", "conveyed to", "signed by",
                "dictated by", "read by")

#: kind -> pattern. Names are case-sensitive (a name is capitalised); the rest ignore case.
PATTERNS: dict[str, re.Pattern[str]] = {
    "date": re.compile(
        rf"\b(?:(?:0?[1-9]|1[0-2])[/-](?:0?[1-9]|[12]\d|3[01])[/-](?:{_YEAR}|\d{{2}})"
        rf"|{_YEAR}-(?:0?[1-9]|1[0-2])-(?:0?[1-9]|[12]\d|3[01])"
        rf"|{_MONTH}\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+{_YEAR}"
        rf"|\d{{1,2}}(?:st|nd|rd|th)?\s+{_MONTH}\.?,?\s+{_YEAR})\b", re.IGNORECASE),
    "phone number": re.compile(r"(?:\(\d{3}\)\s?|\b\d{3}[-.])\d{3}[-.]\d{4}\b|\b\d{3}-\d{4}\b"),
    "e-mail address": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE),
    "MRN-like number": re.compile(r"\b\d{7,}\b|\b(?:mrn|medical record(?: number| no\.?)?)\s*[:#]?\s*\d{3,}",
                                  re.IGNORECASE),
    "name": re.compile(
        rf"\b(?:Dr|Mr|Mrs|Ms|Miss|Prof)\.?\s+{_CAPITALISED}"
        rf"|(?i:\b(?:{'|'.join(map(re.escape, NOTIFICATION))})\b)\s+(?:(?i:to|the)\s+){{0,2}}"
        rf"{_CAPITALISED}(?:\s+[A-Z]\.)?\s+{_CAPITALISED}"),
}


@dataclass(frozen=True)
class Hit:
    file: str
    row: int
    field: str
    kind: str
    offset: int
    shape: str

    def line(self) -> str:
        return f"{self.file} row {self.row} {self.field}: {self.kind} {self.shape!r} at character {self.offset}"


def shape(text: str) -> str:
    """``"Dr. Smith 617-555"`` -> ``"Xx. Xxxxx 999-999"``."""
    return re.sub(r"[a-z]", "x", re.sub(r"[A-Z]", "X", re.sub(r"\d", "9", text)))


#: A fast superset of the patterns (each match of them contains a match of this, or a
#: NOTIFICATION phrase): text without one is skipped, which keeps the scan at tens of MB/s.
_GATE = re.compile(r"\d(?:\d\d|[/.-]\d)|@|[DMP](?:rs?|s|iss|rof)\b")


def scan_text(text: str) -> list[tuple[str, int, str]]:
    """(kind, offset, shape) of every PHI-like span in ``text``."""
    if not _GATE.search(text) and not any(phrase in text.lower() for phrase in NOTIFICATION):
        return []
    return [(kind, m.start(), shape(m.group())) for kind, pattern in PATTERNS.items() for m in pattern.finditer(text)]


def _parquet_texts(path: Path) -> Iterator[tuple[int, str, str]]:
    parquet = pq.ParquetFile(path)
    columns = [c for c in PARQUET_TEXT_COLUMNS if c in parquet.schema_arrow.names]
    row = 0
    for batch in parquet.iter_batches(columns=columns, batch_size=4096):
        for record in batch.to_pylist():
            for column in columns:
                value = record[column]
                if isinstance(value, str):
                    yield row, column, value
                elif isinstance(value, list):
                    for turn, message in enumerate(value):
                        if message and isinstance(message.get("content"), str):
                            yield row, f"{column}[{turn}]", message["content"]
            row += 1


def _strings(value: Any, where: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield where, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in JSON_ID_FIELDS:
                yield from _strings(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _strings(item, f"{where}[{i}]")


def _json_texts(path: Path) -> Iterator[tuple[int, str, str]]:
    records = json.loads(path.read_text(encoding="utf-8"))
    for row, record in enumerate(records if isinstance(records, list) else [records]):
        for field, text in _strings(record, ""):
            yield row, field, text


def scan_file(path: Path, name: str) -> list[Hit]:
    """Hits in one data file (``.parquet`` or ``.json``); ``name`` is how hits refer to it."""
    texts = _parquet_texts(path) if path.suffix == ".parquet" else _json_texts(path)
    return [Hit(name, row, field, kind, offset, found)
            for row, field, text in texts for kind, offset, found in scan_text(text)]


def scan_folder(folder: Path) -> list[Hit]:
    """Hits in every Parquet and JSON file under ``folder``, in path order."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix in (".parquet", ".json"))
    return [hit for path in files for hit in scan_file(path, path.relative_to(folder).as_posix())]
