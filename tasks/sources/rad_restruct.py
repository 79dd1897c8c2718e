"""Rad-ReStruct loader for the repository layout ``data/radrestruct/``.

Reads ``{train,val,test}_ids.json``, ``id_to_img_mapping_frontal_reports.json``,
``answer_options.json``, ``<split>_qa_pairs/<id>.json`` and checks ``new_reports/<id>.json``.
Each QA file is a list of ``[question, [answers], [[question, [answers]], ...], {answer_type,
options, path}]``; the output has one row per QA pair. Ids listed in a split file without a QA file
are counted, not an error: public subsets (such as the 200-report sample) list all 3,597 ids.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa

from ...schemas import RADRESTRUCT_QA
from ..errors import InputError

SPLIT_FILES = {"train": "train", "val": "validate", "test": "test"}
ANSWER_TYPES = ("single_choice", "multi_choice", "fixed_choice")

def _read_json(path: Path, expected: str) -> Any:
    if not path.exists():
        raise InputError(path, "file not found", expected=expected)
    data = path.read_bytes()
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass  # the standard parser words the error (or accepts what orjson does not, such as NaN)
    try:
        return json.loads(data.decode("utf-8"))
    except json.JSONDecodeError as err:
        raise InputError(path, f"not valid JSON ({err.msg} at line {err.lineno})", expected=expected) from None
    except UnicodeDecodeError:
        raise InputError(path, "not UTF-8 text", expected=expected) from None


def _str_list(value: Any) -> bool:
    if not isinstance(value, list):
        return False
    try:
        "".join(value)  # TypeError when an element is not a string (checked in C, no generator)
    except TypeError:
        return False
    return True


def parse_qa_item(item: Any, path: Path, index: int, known_answers: set[str]) -> tuple:
    """The checked fields of one QA item: question, answers, history (``[question, answers]``
    pairs), answer type, options and path."""
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
    return question, answers, history, info["answer_type"], info["options"], str(info["path"])


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
    """One row per QA pair (:data:`RADRESTRUCT_QA`, by numeric report id) and the row counts."""
    check_rad_restruct_layout(folder)
    # the parsed items are millions of small objects alive until the table is built: the cyclic
    # collector would scan them over and over (3.2 s -> 1.0 s for the full data set without it)
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _load(folder)
    finally:
        if collecting:
            gc.enable()


def _load(folder: Path) -> tuple[pa.Table, dict[str, int]]:
    mapping = _read_json(folder / "id_to_img_mapping_frontal_reports.json", "a JSON object report id -> image names")
    options = _read_json(folder / "answer_options.json", "a JSON object answer option -> index")
    if not isinstance(mapping, dict) or not isinstance(options, dict):
        raise InputError(folder, "mapping/answer option files must be JSON objects")
    known_answers = set(options)
    reports: list[_Report] = []
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
            reports.append((report_id, split, list(images), structured,
                            [parse_qa_item(item, qa_path, index, known_answers) for index, item in enumerate(items)]))
    notes["radrestruct_qa_pairs"] = sum(len(r[4]) for r in reports)
    if not notes["radrestruct_qa_pairs"]:
        raise InputError(folder, "no QA files found", expected="<split>_qa_pairs/<id>.json for the listed ids")
    return _qa_table(reports), notes


#: One report's (report_id, split, image ids, has a structured report, checked QA items).
_Report = tuple[str, str, list[str], bool, list[tuple]]


def _qa_table(reports: list[_Report]) -> pa.Table:
    """One row per QA item: reports by numeric id (ids that are not numbers last, by text), each
    report's items in file order."""
    ids = pd.Series([r[0] for r in reports], dtype=object)
    order = pd.DataFrame({"_num": pd.to_numeric(ids, errors="coerce"), "report_id": ids}) \
        .sort_values(["_num", "report_id"], kind="stable").index
    rows = [(report, index, item) for report in (reports[k] for k in order) for index, item in enumerate(report[4])]
    question, answers, history, answer_type, options, path = zip(*(item for _, _, item in rows))
    arrays = {
        "report_id": [r[0] for r, _, _ in rows], "split": [r[1] for r, _, _ in rows],
        "qa_index": [index for _, index, _ in rows],
        "question": question, "answers": answers,
        "history": [[{"question": q, "answers": a} for q, a in h] for h in history],
        "answer_type": answer_type, "options": options, "path": path,
        "image_ids": [r[2] for r, _, _ in rows], "has_structured_report": [r[3] for r, _, _ in rows],
    }
    return pa.table([pa.array(arrays[f.name], f.type) for f in RADRESTRUCT_QA], schema=RADRESTRUCT_QA)
