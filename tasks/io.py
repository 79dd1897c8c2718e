"""Crash-safe file output (temp name, then rename) and Parquet/JSON helpers.

Nothing the pipeline writes is ever visible half-written: every writer goes through
:func:`atomic_path`, which hands out a temporary sibling name and renames it into place only
after the body finished without error.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pyarrow as pa
import pyarrow.parquet as pq

PARQUET_COMPRESSION = "zstd"
T = TypeVar("T")


def _tmp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def is_temporary(name: str) -> bool:
    """Whether a file or folder name is that of an unfinished atomic write."""
    return name.startswith(".") and ".tmp-" in name


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def drop_written(fd: int) -> None:
    """Put what was written to the open file ``fd`` on disk and out of the page cache. A large
    file streamed out part by part (the exports) then holds no memory:
    each part's pages are freed and reused for the next instead of the cache growing by the whole
    file. It also makes the file durable before it is renamed into place. (A no-op where the
    platform has no fdatasync / posix_fadvise.)"""
    if hasattr(os, "fdatasync") and hasattr(os, "posix_fadvise"):
        os.fdatasync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


@contextmanager
def atomic_path(path: str | Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; move it onto ``path`` when the block succeeds.

    With ``directory=True`` the temporary path is created as an empty directory and replaces any
    existing directory at ``path`` as a whole.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_sibling(path)
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        if directory and path.exists():
            old = _tmp_sibling(path)
            os.replace(path, old)
            os.replace(tmp, path)
            _remove(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


def write_parquet(table: pa.Table, path: str | Path, *, row_group_size: int | None = None) -> Path:
    """Write ``table`` as zstd Parquet atomically. Same table in, same bytes out."""
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression=PARQUET_COMPRESSION, row_group_size=row_group_size,
                       write_statistics=True)
    return path


@contextmanager
def parquet_writer(path: str | Path, schema: pa.Schema) -> Iterator[pq.ParquetWriter]:
    """A zstd Parquet writer (with statistics, as :func:`write_parquet`) whose file appears at
    ``path`` only when the block succeeds."""
    with atomic_path(path) as tmp, \
            pq.ParquetWriter(tmp, schema, compression=PARQUET_COMPRESSION, write_statistics=True) as writer:
        yield writer


def _opened(path: str | Path, open_: Callable[[Path], T]) -> T:
    """``open_(path)``; a missing or damaged file is a one-line :class:`~.errors.InputError`."""
    from .errors import InputError

    path = Path(path)
    if not path.exists():
        raise InputError(path, "file not found", expected="the output of an earlier stage; run it first")
    try:
        return open_(path)
    except (OSError, pa.ArrowException) as err:
        raise InputError(path, f"not a readable Parquet file ({type(err).__name__}: {' '.join(str(err).split())[:200]})",
                         expected="the file as the stage that writes it left it") from None


def read_parquet(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """A Parquet table; a missing or damaged file is a one-line :class:`~.errors.InputError`."""
    return _opened(path, lambda p: pq.read_table(p, columns=columns))


def parquet_file(path: str | Path) -> pq.ParquetFile:
    """A Parquet file opened for reading row group by row group (errors as :func:`read_parquet`)."""
    return _opened(path, pq.ParquetFile)


def dumps_json(obj: Any) -> str:
    """Canonical JSON text (sorted keys, two-space indent, trailing newline)."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n"


def write_json(obj: Any, path: str | Path) -> Path:
    return write_text(dumps_json(obj), path)


def write_text(text: str, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_of(path: str | Path, chunk: int = 1 << 20) -> hashlib._Hash:
    """A SHA-256 object fed with the bytes of ``path`` (to go on with bytes appended later)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    return sha256_of(path, chunk).hexdigest()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
