"""Exports of the shards for existing consumers.

* ``llava``: the v1.1 LLaVA-style JSON RaDialog's own trainer reads (``mimic_cxr_instruct_llava_v2``):
  a list of ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}], "task_type"}``;
  the image slot "Image information: <IMG>. " becomes LLaVA's "<image>. ".
* ``flat``: the v1 flat JSON (``mimic_cxr_instruct_stratified.json`` style): a list of
  ``{"instruction": <whole Vicuna prompt ending "ASSISTANT:">, "input": "", "output", "dicom"}``.

Both are written as a stream (one record at a time) so that 580k samples never sit in memory as
one JSON document; byte-identical for identical shards.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from ..instruct.presets import FINDINGS_QA, FINDINGS_QA_CODES, TASK_CODES
from ..io import atomic_path
from ..text.conversation import load_conversation
from .shards import iter_batches

EXPORT_COLUMNS = ["sample_id", "task", "task_mode", "dicom_id", "image_path", "messages", "output"]
LLAVA_IMAGE = "<image>. "


def task_code(task: str, task_mode: str | None) -> str:
    if task == FINDINGS_QA:
        return FINDINGS_QA_CODES.get(task_mode or "", "CPQA")
    return TASK_CODES[task]


def llava_record(row: dict[str, Any]) -> dict[str, Any]:
    conv = load_conversation()
    turns = []
    for i, msg in enumerate(row["messages"]):
        value = msg["content"]
        if i == 0 and value.startswith(conv.image_prefix):
            value = LLAVA_IMAGE + value[len(conv.image_prefix):]
        turns.append({"from": "human" if msg["role"] == "user" else "gpt", "value": value})
    return {"id": row["dicom_id"], "image": row["image_path"], "conversations": turns,
            "task_type": task_code(row["task"], row["task_mode"])}


def flat_record(row: dict[str, Any]) -> dict[str, Any]:
    conv = load_conversation()
    return {"instruction": conv.render(row["messages"][:-1]), "input": "", "output": row["output"],
            "dicom": row["dicom_id"]}


EXPORTS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"llava": llava_record, "flat": flat_record}


def iter_rows(version_dir: Path, splits: Iterable[str]) -> Iterator[dict[str, Any]]:
    for split in splits:
        for batch in iter_batches(version_dir, split, columns=EXPORT_COLUMNS):
            yield from batch.to_pylist()


def write_json_list(records: Iterable[dict[str, Any]], path: Path) -> int:
    """Stream ``records`` into a JSON list file atomically; returns the count."""
    count = 0
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write("[")
        for record in records:
            fh.write(",\n" if count else "\n")
            fh.write(json.dumps(record, ensure_ascii=False))
            count += 1
        fh.write("\n]\n" if count else "]\n")
    return count


def export(kind: str, version_dir: Path, splits: Iterable[str], path: Path) -> int:
    convert = EXPORTS[kind]
    return write_json_list((convert(row) for row in iter_rows(version_dir, splits)), path)
