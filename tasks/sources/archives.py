"""One folder out of a repository archive or checkout, e.g. Rad-ReStruct's ``data/radrestruct``.

The source is a checkout (a folder), or a ``.zip`` / ``.tar.gz`` archive such as GitHub's
``/archive/<commit>.zip`` (whose members sit under one top folder, ``Rad-ReStruct-<commit>/``).
The wanted folder is found at the top or one level down, copied or extracted into a temporary
sibling of the target, checked, and renamed into place as a whole. Archive members whose paths
would leave the target (absolute, ``..``) and anything that is not a regular file are skipped.
"""

from __future__ import annotations

import shutil
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ..errors import InputError
from ..io import atomic_path


def extract_folder(source: Path, folder: str, target: Path, check: Callable[[Path], Any]) -> int:
    """Put ``source``'s ``folder`` (e.g. ``data/radrestruct``) at ``target``; returns the file count.

    ``check`` runs on the extracted copy before it replaces ``target``; its errors keep the old one.
    """
    wanted = PurePosixPath(folder).parts
    if source.is_dir() and source.parts[-len(wanted):] == wanted:  # given the folder itself
        source = source.parents[len(wanted) - 1]
    count = 0
    with atomic_path(target, directory=True) as tmp:
        for rel, opener in _members(source):
            inner = _inside(PurePosixPath(rel).parts, wanted)
            if inner is None or not inner or any(p in ("", ".", "..") for p in inner):
                continue
            out = tmp.joinpath(*inner)
            out.parent.mkdir(parents=True, exist_ok=True)
            with opener() as src, open(out, "wb") as dst:
                shutil.copyfileobj(src, dst)
            count += 1
        if count == 0:
            raise InputError(source, f"no {folder}/ folder inside",
                             expected=f"a checkout or archive of the repository holding {folder}/")
        check(tmp)
    return count


def _inside(parts: tuple[str, ...], wanted: tuple[str, ...]) -> tuple[str, ...] | None:
    """The path below ``wanted`` when ``wanted`` starts at the top or under one top folder."""
    for skip in (0, 1):
        if parts[skip:skip + len(wanted)] == wanted:
            return parts[skip + len(wanted):]
    return None


def _members(source: Path) -> Iterator[tuple[str, Callable[[], IO[bytes]]]]:
    """(relative posix path, opener) of every regular file in a folder, zip or tar archive."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink()):
            yield path.relative_to(source).as_posix(), (lambda p=path: open(p, "rb"))
        return
    if not source.is_file():
        raise InputError(source, "not found", expected="a checkout folder or a .zip / .tar.gz archive")
    if zipfile.is_zipfile(source):
        with zipfile.ZipFile(source) as archive:
            for info in archive.infolist():
                if not info.is_dir() and not info.filename.startswith("/"):
                    yield info.filename, (lambda i=info: archive.open(i))
        return
    try:
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile() and not member.name.startswith("/"):
                    yield member.name, (lambda m=member: archive.extractfile(m))
    except tarfile.TarError as err:
        raise InputError(source, f"not a readable archive ({err})", expected="a .zip or .tar(.gz) archive") from None
