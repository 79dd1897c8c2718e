"""The content-addressed generation cache: chunk files of results keyed by request hash.

Layout: ``<workdir>/cache/generation/chunk-<UTC time>-<host>-<pid>-<uuid>.parquet``, each a
Parquet file of :data:`schemas.GENERATION_CACHE` rows, written under a temporary dot-name and
renamed into place when complete (:func:`tasks.io.write_parquet`). Hence:

- a crash loses at most the results not yet in a finished chunk; a finished chunk is never
  rewritten, and a rerun generates only the hashes that no chunk holds;
- several workers (processes, hosts on shared storage) write into one folder without locks:
  chunk names are unique per writer, and readers see only complete files;
- a reader skips temporary files, and skips an unreadable file with a warning; the generate stage
  sets unreadable chunks aside (``<name>.unreadable``, reported by name) and regenerates their rows;
- the same hash in two chunks (two unsharded workers racing) is harmless: readers keep the row
  of the first chunk by name, so every lookup is deterministic and duplicate-free.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ...schemas import GENERATION_CACHE
from ..io import write_parquet
from ..workdir import Workdir
from .engine import Request, Result

log = logging.getLogger(__name__)

CHUNK_GLOB = "chunk-*.parquet"
UNREADABLE_SUFFIX = ".unreadable"
_TEMP = re.compile(r"^\.chunk-\d{8}T\d{6}-(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}\.parquet\.tmp-")


def cache_dir(wd: Workdir) -> Path:
    return wd.cache / "generation"


def host_tag() -> str:
    """This host's name as chunk file names carry it."""
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname()) or "host"


def new_chunk_path(directory: Path) -> Path:
    """A chunk file name no other writer uses: UTC time, host, pid and a random part."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return directory / f"chunk-{stamp}-{host_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet"


def _read_chunk(path: Path, columns: list[str] | None) -> pa.Table | None:
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as err:
        log.warning("generation cache: skipping unreadable chunk %s (%s)", path, " ".join(str(err).split()))
        return None


@dataclass(frozen=True)
class CacheIndex:
    #: request hash -> the chunk whose row readers use (the first by name)
    chunk_of: dict[str, Path]
    #: chunk files that could not be read
    unreadable: list[Path]

    def chunks_for(self, hashes: Iterable[str]) -> list[Path]:
        """The chunks holding the results of ``hashes`` (those that are cached)."""
        return sorted({self.chunk_of[h] for h in hashes if h in self.chunk_of})


class GenerationCache:
    """The cache folder (``GenerationCache(wd.cache / "generation")``, or :meth:`of` a work dir)."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)

    @classmethod
    def of(cls, wd: Workdir) -> GenerationCache:
        return cls(cache_dir(wd))

    def chunk_files(self) -> list[Path]:
        """Finished chunk files, sorted by name (temporary files start with a dot and never match)."""
        return sorted(self.directory.glob(CHUNK_GLOB)) if self.directory.is_dir() else []

    def read(self, columns: Sequence[str] | None = None) -> pa.Table:
        """Every cached result, one row per request hash (the first chunk by name wins)."""
        wanted = None if columns is None else list(dict.fromkeys(["request_hash", *columns]))
        tables = [t for t in (_read_chunk(p, wanted) for p in self.chunk_files()) if t is not None]
        schema = GENERATION_CACHE if wanted is None else pa.schema([GENERATION_CACHE.field(c) for c in wanted])
        if not tables:
            return schema.empty_table()
        table = pa.concat_tables([t.select(schema.names).cast(schema) for t in tables])
        first = ~pd.Series(table.column("request_hash").to_numpy(zero_copy_only=False)).duplicated().to_numpy()
        return table.filter(pa.array(first))

    def index(self) -> CacheIndex:
        """Which chunk holds each cached hash; every chunk is read whole, so a chunk counts as
        readable only when all of its columns are."""
        chunk_of: dict[str, Path] = {}
        unreadable: list[Path] = []
        for path in self.chunk_files():
            table = _read_chunk(path, None)
            if table is None:
                unreadable.append(path)
                continue
            for request_hash in table.column("request_hash").to_pylist():
                chunk_of.setdefault(request_hash, path)
        return CacheIndex(chunk_of, unreadable)

    def hashes(self) -> set[str]:
        return set(self.index().chunk_of)

    def set_aside(self, chunks: Sequence[Path]) -> list[str]:
        """Rename unreadable chunks to ``<name>.unreadable`` (kept for inspection, never read again);
        returns their names."""
        for path in chunks:
            os.replace(path, path.with_name(path.name + UNREADABLE_SUFFIX))
        if chunks:
            log.warning("generation cache: set aside %d unreadable chunk(s): %s", len(chunks),
                        ", ".join(p.name for p in chunks))
        return [p.name for p in chunks]

    def lookup(self, hashes: Iterable[str | None]) -> pd.DataFrame:
        """The cached results of ``hashes``: one row per distinct cached hash (columns of
        GENERATION_CACHE, in the order the hashes first appear); None and uncached hashes have none."""
        order = list(dict.fromkeys(h for h in hashes if h is not None))
        table = self.read()
        found = table.filter(pc.is_in(table.column("request_hash"), pa.array(order, pa.string())))
        frame = found.to_pandas().set_index("request_hash", drop=False)
        return frame.loc[[h for h in order if h in frame.index]].reset_index(drop=True)

    def writer(self, chunk_size: int) -> ChunkWriter:
        return ChunkWriter(self, chunk_size)

    def remove_stale_temps(self) -> list[Path]:
        """Delete temporary chunk files left by killed writers of this host (their pid is gone)."""
        removed = []
        for path in self.directory.glob(".chunk-*") if self.directory.is_dir() else ():
            match = _TEMP.match(path.name)
            if match and match["host"] == host_tag() and not _alive(int(match["pid"])):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed


def cache_row(request: Request, result: Result, *, backend: str, model: str, revision: str) -> dict[str, Any]:
    return {
        "request_hash": request.request_hash, "text": result.text, "finish_reason": result.finish_reason,
        "prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
        "latency_s": result.latency_s, "backend": backend, "model": model, "revision": revision,
        "sampling": request.sampling.to_json(), "seed": request.seed,
        "template_version": request.template_version,
    }


class ChunkWriter:
    """Buffers cache rows and writes a chunk file every ``chunk_size`` rows.

    Leaving the ``with`` block writes the rows in hand, also when it is left by an exception
    (their results are complete); only a hard kill loses them.
    """

    def __init__(self, cache: GenerationCache, chunk_size: int):
        self.cache = cache
        self.chunk_size = chunk_size
        self.rows: list[dict[str, Any]] = []
        self.written: list[Path] = []

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        if len(self.rows) >= self.chunk_size:
            self.flush()

    def flush(self) -> None:
        if not self.rows:
            return
        table = pa.Table.from_pylist(self.rows, schema=GENERATION_CACHE)
        self.written.append(write_parquet(table, new_chunk_path(self.cache.directory)))
        self.rows = []

    def __enter__(self) -> ChunkWriter:
        self.cache.directory.mkdir(parents=True, exist_ok=True)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.flush()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
