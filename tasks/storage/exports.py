"""Exports of the shards for existing consumers.

* ``llava``: the v1.1 LLaVA-style JSON RaDialog's own trainer reads (``mimic_cxr_instruct_llava_v2``):
  a list of ``{"id", "image", "conversations": [{"from": "human"|"gpt", "value"}], "task_type"}``;
  the conversation's image slot (e.g. "Image information: <IMG>. ") becomes LLaVA's "<image>. ".
* ``flat``: the v1 flat JSON (``mimic_cxr_instruct_stratified.json`` style) that RaDialog's
  ``finetune.py`` reads: a list of ``{"instruction": <the whole chat prompt ending "ASSISTANT:">,
  "input": "", "output", "dicom"}``. The prompt is rendered with the build's conversation format
  (``plan.templates_dir``): with the imported original it is the original's record, system prompt
  and 32-token image slot included.

Both are written as a stream (one record at a time) so that 580k samples never sit in memory as
one JSON document, shards converted in parallel processes; byte-identical for identical shards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from ..instruct.presets import FINDINGS_QA, FINDINGS_QA_CODES, TASK_CODES
from ..io import atomic_path
from ..parallel import default_workers, process_pool
from ..text.conversation import Conversation, load_conversation
from .shards import shard_files

EXPORT_COLUMNS = ["sample_id", "task", "task_mode", "dicom_id", "image_path", "messages", "output"]
LLAVA_IMAGE = "<image>. "


def task_code(task: str, task_mode: str | None) -> str:
    if task == FINDINGS_QA:
        return FINDINGS_QA_CODES.get(task_mode or "", "CPQA")
    return TASK_CODES[task]


def llava_record(row: dict[str, Any], conv: Conversation) -> dict[str, Any]:
    turns = []
    for i, msg in enumerate(row["messages"]):
        value = msg["content"]
        if i == 0 and value.startswith(conv.image_prefix):
            value = LLAVA_IMAGE + value[len(conv.image_prefix):]
        turns.append({"from": "human" if msg["role"] == "user" else "gpt", "value": value})
    return {"id": row["dicom_id"], "image": row["image_path"], "conversations": turns,
            "task_type": task_code(row["task"], row["task_mode"])}


def flat_record(row: dict[str, Any], conv: Conversation) -> dict[str, Any]:
    return {"instruction": conv.render(row["messages"][:-1]), "input": "", "output": row["output"],
            "dicom": row["dicom_id"]}


EXPORTS: dict[str, Callable[[dict[str, Any], Conversation], dict[str, Any]]] = {
    "llava": llava_record, "flat": flat_record}


def _shard_rows(path: Path) -> Iterator[dict[str, Any]]:
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096, columns=EXPORT_COLUMNS):
        yield from batch.to_pylist()


def write_records(shard: Path, parts: Mapping[str, Path], conversation: Conversation) -> int:
    """The records of one shard, for every ``kind -> part file``, comma-separated (no brackets)."""
    count = 0
    with ExitStack() as stack:
        handles = [(stack.enter_context(open(part, "wb")), EXPORTS[kind]) for kind, part in parts.items()]
        for row in _shard_rows(shard):
            for fh, convert in handles:
                if count:
                    fh.write(b",\n")
                fh.write(orjson.dumps(convert(row, conversation)))
            count += 1
    return count


def export(kinds: Mapping[str, Path], version_dir: Path, splits: Iterable[str], *, workers: int | None = None,
           conversation: Conversation | None = None) -> int:
    """Write the exports ``kind -> path`` of ``splits`` (one read of the shards for all kinds), with
    ``conversation`` (default: the packaged one); returns the record count. Shards are converted in parallel by up to ``workers`` processes
    (default: CPU count, at most 8; see :mod:`..parallel`) into part files that are then joined in shard order, so the
    bytes do not depend on the number of workers; each export appears atomically."""
    shards = [path for split in splits for path in shard_files(version_dir, split)]
    conversation = conversation or load_conversation()
    workers = default_workers(len(shards)) if workers is None else workers
    first = next(iter(kinds.values()))
    first.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=first.parent, prefix=".export-") as tmp:
        parts = [{kind: Path(tmp, f"{i:05d}.{kind}") for kind in kinds} for i in range(len(shards))]
        if workers > 1:
            with process_pool(workers) as pool:
                counts = list(pool.map(write_records, shards, parts, [conversation] * len(shards)))
        else:
            counts = [write_records(shard, part, conversation) for shard, part in zip(shards, parts)]
        for kind, target in kinds.items():
            with atomic_path(target) as out, open(out, "wb") as fh:
                fh.write(b"[")
                written = 0
                for part, count in zip(parts, counts):
                    if count:
                        fh.write(b",\n" if written else b"\n")
                        with open(part[kind], "rb") as src:
                            shutil.copyfileobj(src, fh, 1 << 22)
                        written += count
                fh.write(b"\n]\n" if written else b"]\n")
    return sum(counts)
