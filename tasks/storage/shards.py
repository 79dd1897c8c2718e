"""Versioned Parquet shards: ``shards/<version>/<split>/part-NNNNN.parquet``.

Rows of a split are ordered by ``sample_id`` (a hash, so tasks are interleaved as in a shuffle,
yet the order is fixed), cut into shards of ``rows_per_shard`` rows and written as zstd Parquet
with row groups of ``row_group_size`` rows for streaming readers. The same table in always gives
the same bytes out.
"""

from __future__ import annotations

from collections.abc import Collection
from functools import cache
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ..io import sha256_file, write_parquet

SPLIT_DIRS = ("train", "validate", "test")
EXCLUDED_DIR = "excluded"


def with_pandas_metadata(schema: pa.Schema, object_columns: Collection[str]) -> pa.Schema:
    """``schema`` with the pandas metadata the plan and the shards have always carried, so that
    pandas readers get nullable ``Int64`` ids: integers as Int64, nested columns and
    ``object_columns`` as object, other strings as pandas' ``str``."""
    return _pandas_schema(schema, frozenset(object_columns))


@cache
def _pandas_schema(schema: pa.Schema, object_columns: frozenset[str]) -> pa.Schema:
    def dtype(field: pa.Field) -> str | type:
        if pa.types.is_integer(field.type):
            return "Int64"
        if pa.types.is_boolean(field.type):
            return bool
        return object if pa.types.is_nested(field.type) or field.name in object_columns else "str"

    empty = pd.DataFrame({f.name: pd.Series([], dtype=dtype(f)) for f in schema})
    return pa.Table.from_pandas(empty, schema=schema, preserve_index=False).schema


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def write_shard(table: pa.Table, folder: Path, index: int, *, row_group_size: int) -> tuple[str, dict]:
    """Write shard ``index`` of a folder; returns its file name and {sha256, rows}."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_parquet(table, folder / shard_name(index), row_group_size=row_group_size)
    return path.name, {"sha256": sha256_file(path), "rows": table.num_rows}


def write_split(table: pa.Table, folder: Path, *, rows_per_shard: int, row_group_size: int) -> dict[str, dict]:
    """Write one split's rows (ordered by sample_id) as shards; returns {file name: {sha256, rows}}."""
    table = table.take(pc.sort_indices(table, [("sample_id", "ascending")]))
    out: dict[str, dict] = {}
    for index, start in enumerate(range(0, max(table.num_rows, 1), rows_per_shard)):
        part = table.slice(start, rows_per_shard)
        if part.num_rows == 0 and index > 0:
            break
        name, info = write_shard(part, folder, index, row_group_size=row_group_size)
        out[name] = info
    return out


def shard_files(version_dir: Path, split: str) -> list[Path]:
    return sorted((version_dir / split).glob("part-*.parquet"))
