"""PhysioNet's ``SHA256SUMS.txt`` and the record of local files already checked against it.

PhysioNet publishes one ``SHA256SUMS.txt`` per project version: a line ``<sha256> <path>`` per file
(one space; ``sha256sum``'s two-space and ``" *"`` forms are read too), the path relative to the
version folder (``mimic-cxr-reports.zip``, ``files/p10/p10000032/s50414267/<dicom>.jpg``).

Hashing gigabytes on every run is what the :class:`VerifiedRecord` avoids: after a file matched its
checksum, one JSON line notes its path, checksum, size and modification time. A later run trusts a
file whose size and mtime are unchanged and whose expected checksum is still the recorded one, and
hashes it again otherwise. The record is append-only (a crash can cut at most its last line, which
is then ignored), so one writer per run is cheap even for 377k images.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from ..errors import InputError
from ..io import write_text

SUMS_FILE = "SHA256SUMS.txt"
_LINE = re.compile(r"^([0-9a-fA-F]{64}) [ *]?(\S.*)$")


def parse_sha256sums(text: str, where: str | Path) -> dict[str, str]:
    """``{relative path: lower-case sha256}`` of a checksum list; a malformed line is an error."""
    sums: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        match = _LINE.match(line.rstrip("\r"))
        if match is None:
            raise InputError(where, "not a checksum line", record=f"line {number}",
                             expected="<64 hex digits> <relative path>")
        sums[match.group(2)] = match.group(1).lower()
    if not sums:
        raise InputError(where, "empty checksum list", expected="one '<sha256> <path>' line per file")
    return sums


class VerifiedRecord:
    """Files that matched their published checksum: JSON lines ``{path, sha256, size, mtime_ns}``."""

    def __init__(self, path: Path):
        self.path = path
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[str, int, int]] = {}
        lines = 0
        if path.exists():
            with open(path, encoding="utf-8") as fh:
                for lines, line in enumerate(fh, start=1):
                    try:
                        entry = json.loads(line)
                        self._entries[entry["path"]] = (entry["sha256"], entry["size"], entry["mtime_ns"])
                    except (ValueError, KeyError, TypeError):
                        continue  # a line cut by a crash: that file is simply hashed again
        if lines > 2 * len(self._entries) + 1000:  # mostly superseded lines (--force runs): keep the latest
            write_text("".join(_line(p, *e) + "\n" for p, e in self._entries.items()), path)

    def matches(self, file: Path, sha256: str) -> bool:
        """Whether ``file`` was verified as ``sha256`` and has not changed since (size, mtime)."""
        entry = self._entries.get(str(file))
        if entry is None:
            return False
        try:
            st = file.stat()
        except FileNotFoundError:
            return False
        return entry == (sha256, st.st_size, st.st_mtime_ns)

    def add(self, file: Path, sha256: str) -> None:
        st = file.stat()
        entry = (sha256, st.st_size, st.st_mtime_ns)
        with self._lock:
            self._entries[str(file)] = entry
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(_line(str(file), *entry) + "\n")


def _line(path: str, sha256: str, size: int, mtime_ns: int) -> str:
    return json.dumps({"path": path, "sha256": sha256, "size": size, "mtime_ns": mtime_ns})
