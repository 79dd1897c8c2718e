"""Per-text label cache: relabelling unchanged text is free.

Layout: ``<cache_dir>/<labeler name>-<hash of its version>/part-<hash of the chunk's keys>.parquet``,
each file holding ``key`` + the 14 condition columns (float32, null = blank). A key is
``short_id(labeler name, labeler version, text)``, so any change of weights, phrase files or code
(which changes the version) misses the cache. Missing texts are labelled in chunks and each chunk is
written atomically (:func:`tasks.io.write_parquet`) as soon as it is done: a crash loses at most the
chunk in flight, and a rerun labels only what no file holds. Empty texts are never labelled (all
blank) and never cached.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..hashing import short_id
from ..io import write_parquet
from .conditions import CONDITION_COLUMNS, CONDITIONS
from .interface import Labeler, is_empty, label_texts

log = logging.getLogger("radialog_instruct.label")

#: Texts per labelled-and-written chunk.
CHUNK = 8192
CACHE_SCHEMA = pa.schema([("key", pa.string()), *[(c, pa.float32()) for c in CONDITION_COLUMNS]])


@dataclass(frozen=True)
class CachedLabels:
    values: np.ndarray  # (n, 14) float32, NaN = blank
    cache_hits: int     # non-empty texts answered from the cache
    labeled: int        # distinct texts labelled now
    empty: int          # empty texts (all blank, not labelled)
    seconds: float      # time spent labelling


def text_key(labeler: Labeler, text: str) -> str:
    return short_id(labeler.name, labeler.version, text, length=32)


def cache_folder(cache_dir: str | Path, labeler: Labeler) -> Path:
    return Path(cache_dir) / f"{labeler.name}-{short_id(labeler.version, length=12)}"


def _read(folder: Path) -> tuple[pd.Index, np.ndarray]:
    files = sorted(folder.glob("part-*.parquet")) if folder.is_dir() else []
    if not files:
        return pd.Index([], dtype=object), np.empty((0, len(CONDITIONS)), np.float32)
    table = pa.concat_tables([pq.read_table(f, schema=CACHE_SCHEMA) for f in files])
    keys = pd.Index(table.column("key").to_numpy(zero_copy_only=False))
    values = np.column_stack([table.column(c).to_numpy(zero_copy_only=False) for c in CONDITION_COLUMNS])
    first = ~keys.duplicated()
    return keys[first], values[first].astype(np.float32)


def _write(folder: Path, keys: list[str], values: np.ndarray) -> None:
    columns = {"key": pa.array(keys, pa.string())}
    for j, name in enumerate(CONDITION_COLUMNS):
        columns[name] = pa.array(values[:, j], pa.float32(), mask=np.isnan(values[:, j]))
    write_parquet(pa.table(columns, schema=CACHE_SCHEMA), folder / f"part-{short_id(*keys, length=16)}.parquet")


def lookup_or_label(labeler: Labeler, texts: Sequence[str], cache_dir: str | Path, *,
                    chunk_size: int = CHUNK) -> CachedLabels:
    """Labels of ``texts`` from the cache, labelling (and caching) the distinct missing ones."""
    texts = list(texts)
    out = np.full((len(texts), len(CONDITIONS)), np.nan, dtype=np.float32)
    rows = [i for i, t in enumerate(texts) if not is_empty(t)]
    keys = [text_key(labeler, texts[i]) for i in rows]
    folder = cache_folder(cache_dir, labeler)
    known_keys, known_values = _read(folder)
    at = known_keys.get_indexer(keys) if keys else np.empty(0, np.int64)
    hit = at >= 0
    out[np.asarray(rows, np.int64)[hit]] = known_values[at[hit]]
    missing: dict[str, str] = {}
    for k, i, h in zip(keys, rows, hit):
        if not h:
            missing.setdefault(k, texts[i])
    new_keys, new_texts = list(missing), list(missing.values())
    new_values = np.empty((len(new_keys), len(CONDITIONS)), np.float32)
    started = time.perf_counter()
    for lo in range(0, len(new_keys), chunk_size):
        chunk = slice(lo, lo + chunk_size)
        new_values[chunk] = label_texts(labeler, new_texts[chunk])
        _write(folder, new_keys[chunk], new_values[chunk])
        log.info("%s: labelled %d / %d new texts", labeler.name, min(lo + chunk_size, len(new_keys)), len(new_keys))
    seconds = time.perf_counter() - started
    if new_keys:
        where = pd.Index(new_keys).get_indexer([k for k, h in zip(keys, hit) if not h])
        out[np.asarray(rows, np.int64)[~hit]] = new_values[where]
    return CachedLabels(out, int(hit.sum()), len(new_keys), len(texts) - len(rows), seconds)


def label_texts_cached(labeler: Labeler, texts: Sequence[str], cache_dir: str | Path) -> np.ndarray:
    """(n, 14) labels of ``texts``, answered from the per-text cache where possible."""
    return lookup_or_label(labeler, texts, cache_dir).values
