"""One command at a time per work dir: an advisory ``flock`` on ``<workdir>/.lock``.

A second command on a work dir that is in use waits for the first, after one line saying whom
it waits for; it then finds the stages the first one finished fresh and skips them, so nothing is
generated twice and both commands end with the same, complete result. (Exiting at once would
make ``make demo`` in two terminals, or a ``validate`` started during a ``build``, fail for no
fault of the user's; the wait can always be cut short with Ctrl-C.)

The lock belongs to an open file, so the OS releases it when its process ends, however it ends
(SIGKILL included): a lock file left behind never blocks anything. The file holds the holder's
pid, command and start time, only to tell the waiting command about it. Re-entrant within a
process (a ``build`` holds it while its stages run).
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOCK_NAME = ".lock"

_held: dict[Path, int] = {}  # work dir -> nesting depth in this process


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def holder(root: Path) -> str:
    """Who holds (or last held) the lock, as written by :func:`hold` ("" when unknown)."""
    try:
        return (root / LOCK_NAME).read_text(encoding="utf-8").strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return ""


@contextmanager
def hold(root: str | Path, command: str, notify: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the work dir ``root`` for ``command``; wait (after one ``notify`` line) while another
    process holds it."""
    root = Path(root).resolve()
    if root in _held:
        _held[root] += 1
        try:
            yield
        finally:
            _held[root] -= 1
        return
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(root) or "another process"
            notify(f"work dir {root} is in use by {who}; waiting for it to finish (Ctrl-C to stop)")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} ({command}, since {time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode(), 0)
        _held[root] = 1
        try:
            yield
        finally:
            del _held[root]
    finally:
        os.close(fd)  # releases the lock
