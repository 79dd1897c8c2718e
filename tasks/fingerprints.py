"""Fingerprints of stage inputs and outputs: size and SHA-256 digest, and location-free path labels.

- A file: its size and the SHA-256 of its bytes.
- A folder the pipeline wrote (``deep``): size, file count and a digest over every file's relative
  path, size and SHA-256, so a copied work dir (``cp -r`` included) keeps its fingerprints.
- A source folder (not ``deep``, e.g. the 227k MIMIC-CXR report files): size, file count and a
  digest of the listing (relative path, size, mtime), so an unchanged tree is recognised without
  reading it.

Temporary files of unfinished atomic writes (``.<name>.tmp-*``) are not part of a folder. File
digests are memoised per process on (path, size, mtime, inode): one ``build`` reads each file once.

:func:`label` names a path relative to the first anchor that contains it (the work dir, the params
file's folder, the installed package), so stamps do not change when these folders move.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .io import is_temporary, sha256_file

Fingerprint = dict[str, Any]

_digests: dict[tuple[str, int, int, int], str] = {}


def file_digest(path: Path) -> str:
    st = path.stat()
    memo = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
    if memo not in _digests:
        _digests[memo] = sha256_file(path)
    return _digests[memo]


def _files(folder: Path) -> list[Path]:
    out = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not is_temporary(d))
        out.extend(Path(root, n) for n in sorted(names) if not is_temporary(n))
    return out


def fingerprint(path: Path, *, deep: bool = True) -> Fingerprint | None:
    """Size and digest of ``path`` (None when it does not exist); see the module docstring."""
    if path.is_file():
        return {"size": path.stat().st_size, "sha256": file_digest(path)}
    if not path.is_dir():
        return None
    h = hashlib.sha256()
    size = 0
    files = _files(path)
    for p in files:
        st = p.stat()
        size += st.st_size
        detail = file_digest(p) if deep else str(st.st_mtime_ns)
        h.update(f"{p.relative_to(path).as_posix()}\0{st.st_size}\0{detail}\n".encode())
    return {"size": size, "files": len(files), "sha256" if deep else "listing": h.hexdigest()}


def label(path: Path, anchors: Sequence[tuple[str, Path | None]]) -> str:
    """``path`` relative to the first anchor ``(prefix, folder)`` holding it, else absolute."""
    path = Path(path)
    for prefix, root in anchors:
        if root is not None and path.is_absolute() and path.is_relative_to(root):
            rel = path.relative_to(root).as_posix()
            return prefix + rel if rel != "." else prefix.rstrip("/") or "."
    return path.as_posix()


def relabel_paths(value: Any, anchors: Sequence[tuple[str, Path | None]]) -> Any:
    """``value`` with every absolute path string inside it replaced by its :func:`label`."""
    if isinstance(value, dict):
        return {k: relabel_paths(v, anchors) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [relabel_paths(v, anchors) for v in value]
    if isinstance(value, str) and os.path.isabs(value):
        return label(Path(value), anchors)
    return value
