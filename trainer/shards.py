"""Reading a dataset version's shards as a stream: manifest checks, seeded shuffling, resumable order.

``shards/<version>/manifest.json`` lists every ``<split>/part-NNNNN.parquet`` with its sha256; the
files of a split are read one row group at a time (never a whole table), keeping only the rows
whose ``split`` column names that split and whose ``task`` is selected.

Shuffling is two-level and bounded: the row groups of all files are visited in a seeded random
order, and rows pass through a shuffle buffer of fixed size. The assembled shards are sorted by
task, so the row-group permutation is what mixes tasks; the buffer mixes within and across groups.
The order is a pure function of (seed, purpose, epoch): resuming replays it and skips the rows
already consumed, which costs reading them again but no tokenisation.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..tasks.errors import InputError
from ..tasks.hashing import hash64
from ..tasks.io import read_json, sha256_file

MANIFEST = "manifest.json"
ROW_COLUMNS = ["sample_id", "split", "task", "dicom_id", "messages"]


@dataclass(frozen=True)
class Row:
    sample_id: str
    task: str
    dicom_id: str | None
    messages: list[dict[str, str]]


@dataclass(frozen=True)
class ShardSet:
    """One dataset version on disk."""

    root: Path
    version: str
    manifest_sha256: str
    config_hash: str | None
    #: manifest entries: relative path -> {"sha256", "rows", ...}
    shards: dict[str, dict]

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    def files(self, split: str) -> list[Path]:
        return [self.root / rel for rel in sorted(self.shards) if Path(rel).parts[0] == split]

    def verify(self, split: str) -> None:
        """Check every file of ``split`` against its manifest sha256 (one-line error on mismatch)."""
        for path in self.files(split):
            rel = path.relative_to(self.root).as_posix()
            if not path.exists():
                raise InputError(path, "shard listed in manifest.json is missing", expected="an intact shards folder")
            if sha256_file(path) != self.shards[rel].get("sha256"):
                raise InputError(path, "sha256 differs from manifest.json",
                                 expected="the shard the assemble stage wrote; re-run assemble")


def open_shards(root: Path) -> ShardSet:
    manifest = root / MANIFEST
    if not manifest.exists():
        raise InputError(manifest, "file not found", expected="the output of the assemble stage; run it first")
    data = read_json(manifest)
    shards = data.get("shards")
    if not isinstance(shards, dict) or not shards:
        raise InputError(manifest, "no 'shards' entries", expected='"shards": {relative path: {"sha256", "rows"}}')
    return ShardSet(root=root, version=str(data.get("version", root.name)), manifest_sha256=sha256_file(manifest),
                    config_hash=data.get("config_hash"), shards=shards)


def _row_groups(files: Sequence[Path]) -> list[tuple[Path, int]]:
    return [(path, i) for path in files for i in range(pq.ParquetFile(path).num_row_groups)]


def _selected(table: pa.Table, split: str, tasks: Sequence[str] | None) -> pa.Table:
    keep = pc.equal(table["split"], split)
    if tasks is not None:
        keep = pc.and_(keep, pc.is_in(table["task"], value_set=pa.array(list(tasks), pa.string())))
    return table.filter(keep)


def _read_group(path: Path, index: int, split: str, tasks: Sequence[str] | None) -> list[Row]:
    table = _selected(pq.ParquetFile(path).read_row_group(index, columns=ROW_COLUMNS), split, tasks)
    return [Row(sample_id=r["sample_id"], task=r["task"], dicom_id=r["dicom_id"], messages=r["messages"])
            for r in table.to_pylist()]


def count_rows(files: Sequence[Path], split: str, tasks: Sequence[str] | None) -> int:
    """Rows of ``split`` (and ``tasks``) in ``files``, reading only the two filter columns."""
    total = 0
    for path, index in _row_groups(files):
        table = pq.ParquetFile(path).read_row_group(index, columns=["split", "task"])
        total += _selected(table, split, tasks).num_rows
    return total


def stream_rows(files: Sequence[Path], split: str, tasks: Sequence[str] | None, *, seed: int, purpose: str,
                epoch: int, buffer_size: int) -> Iterator[Row]:
    """The rows of ``split`` in a seeded shuffled order (row-group permutation + shuffle buffer)."""
    rng = random.Random(hash64(f"{seed}|{purpose}|{epoch}"))
    groups = _row_groups(files)
    rng.shuffle(groups)
    buffer: list[Row] = []
    for path, index in groups:
        for row in _read_group(path, index, split, tasks):
            if len(buffer) < buffer_size:
                buffer.append(row)
                continue
            j = rng.randrange(buffer_size)
            yield buffer[j]
            buffer[j] = row
    rng.shuffle(buffer)
    yield from buffer
