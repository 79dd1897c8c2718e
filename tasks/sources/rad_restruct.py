"""Rad-ReStruct loader for the repository layout ``data/radrestruct/``.

Reads ``{train,val,test}_ids.json``, ``id_to_img_mapping_frontal_reports.json``,
``answer_options.json``, ``<split>_qa_pairs/<id>.json`` and checks ``new_reports/<id>.json``.
Each QA file is a list of ``[question, [answers], [[question, [answers]], ...], {answer_type,
options, path}]``; the output has one row per QA pair. Ids listed in a split file without a QA file
are counted, not an error: public subsets (such as the 200-report sample) list all 3,597 ids.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa

from ...schemas import RADRESTRUCT_QA
from ..errors import InputError

SPLIT_FILES = {"train": "train", "val": "validate", "test": "test"}
ANSWER_TYPES = ("single_choice", "multi_choice", "fixed_choice")

def _read_json(path: Path, expected: str) -> Any:
    if not path.exists():
        raise InputError(path, "file not found", expected=expected)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg} at line {err.lineno})", expected=expected) from None
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text", expected=expected) from None


def _str_list(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


def parse_qa_item(item: Any, path: Path, index: int, known_answers: set[str]) -> dict[str, Any]:
    record = f"item {index}"
    if not (isinstance(item, list) and len(item) == 4):
        raise InputError(path, "QA item is not a 4-element list", record=record,
                         expected="[question, [answers], history, {answer_type, options, path}]")
    question, answers, history, info = item
    if not isinstance(question, str) or not _str_list(answers) or not answers:
        raise InputError(path, "question must be a string and answers a non-empty list of strings", record=record)
    if not isinstance(history, list) or not all(
            isinstance(h, list) and len(h) == 2 and isinstance(h[0], str) and _str_list(h[1]) for h in history):
        raise InputError(path, "history must be a list of [question, [answers]] pairs", record=record)
    if not isinstance(info, dict) or not {"answer_type", "options", "path"} <= set(info):
        raise InputError(path, "last element must hold answer_type, options and path", record=record)
    if info["answer_type"] not in ANSWER_TYPES:
        raise InputError(path, f"unknown answer_type {info['answer_type']!r}", record=record,
                         expected=" or ".join(ANSWER_TYPES))
    if not _str_list(info["options"]) or not info["options"]:
        raise InputError(path, "options must be a non-empty list of strings", record=record)
    stray = [a for a in answers if a not in info["options"] or a not in known_answers]
    if stray:
        raise InputError(path, f"answer {stray[0]!r} is not among the item's options / answer_options.json",
                         record=record)
    return {
        "qa_index": index,
        "question": question,
        "answers": answers,
        "history": [{"question": q, "answers": a} for q, a in history],
        "answer_type": info["answer_type"],
        "options": info["options"],
        "path": str(info["path"]),
    }


REQUIRED_FILES = ("id_to_img_mapping_frontal_reports.json", "answer_options.json",
                  *(f"{name}_ids.json" for name in SPLIT_FILES))


def check_rad_restruct_layout(folder: Path) -> None:
    """The folder holds the files :func:`load_rad_restruct` needs (without reading them)."""
    if not folder.is_dir():
        raise InputError(folder, "Rad-ReStruct folder not found", expected="the repository's data/radrestruct folder")
    for name in REQUIRED_FILES:
        if not (folder / name).is_file():
            raise InputError(folder / name, "file not found", expected="the repository's data/radrestruct folder")


def load_rad_restruct(folder: Path) -> tuple[pa.Table, dict[str, int]]:
    check_rad_restruct_layout(folder)
    mapping = _read_json(folder / "id_to_img_mapping_frontal_reports.json", "a JSON object report id -> image names")
    options = _read_json(folder / "answer_options.json", "a JSON object answer option -> index")
    if not isinstance(mapping, dict) or not isinstance(options, dict):
        raise InputError(folder, "mapping/answer option files must be JSON objects")
    known_answers = set(options)
    rows: list[dict[str, Any]] = []
    notes = {"radrestruct_listed_ids": 0, "radrestruct_ids_without_qa": 0, "radrestruct_reports": 0,
             "radrestruct_reports_without_image": 0}
    seen: dict[str, str] = {}
    for file_split, split in SPLIT_FILES.items():
        ids = _read_json(folder / f"{file_split}_ids.json", "a JSON list of report ids")
        if not isinstance(ids, list):
            raise InputError(folder / f"{file_split}_ids.json", "not a JSON list", expected="a list of report ids")
        notes["radrestruct_listed_ids"] += len(ids)
        for report_id in map(str, ids):
            if report_id in seen:
                raise InputError(folder / f"{file_split}_ids.json", f"report {report_id} is also in {seen[report_id]}",
                                 expected="disjoint split id files")
            seen[report_id] = file_split
            qa_path = folder / f"{file_split}_qa_pairs" / f"{report_id}.json"
            if not qa_path.exists():
                notes["radrestruct_ids_without_qa"] += 1
                continue
            items = _read_json(qa_path, "a JSON list of QA items")
            if not isinstance(items, list):
                raise InputError(qa_path, "not a JSON list", expected="a list of QA items")
            images = mapping.get(report_id) or []
            notes["radrestruct_reports"] += 1
            notes["radrestruct_reports_without_image"] += int(not images)
            structured = (folder / "new_reports" / f"{report_id}.json").exists()
            for index, item in enumerate(items):
                row = parse_qa_item(item, qa_path, index, known_answers)
                row.update(report_id=report_id, split=split, image_ids=list(images),
                           has_structured_report=structured)
                rows.append(row)
    if not rows:
        raise InputError(folder, "no QA files found", expected="<split>_qa_pairs/<id>.json for the listed ids")
    frame = pd.DataFrame.from_records(rows, columns=RADRESTRUCT_QA.names)
    frame["_num"] = pd.to_numeric(frame["report_id"], errors="coerce")
    frame = frame.sort_values(["_num", "report_id", "qa_index"], kind="stable").drop(columns="_num")
    notes["radrestruct_qa_pairs"] = len(frame)
    return pa.Table.from_pandas(frame, schema=RADRESTRUCT_QA, preserve_index=False), notes
