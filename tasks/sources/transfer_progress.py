"""Download progress: a bar per file and one for everything (bytes, rate, ETA), drawn with rich.

Downloads report to a :class:`Progress`; the base class ignores everything (library use, tests),
:class:`RichProgress` draws. The command line makes one and activates it for the flow's tasks,
which run in threads of the same process (:func:`active`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.progress import Progress as RichBars


class Progress:
    """Receives transfer events; this one does nothing with them."""

    def expect(self, files: int) -> None:
        """``files`` more files are going to be checked or fetched."""

    def checked(self) -> None:
        """One expected file is done (verified, skipped or downloaded)."""

    def start(self, name: str, total: int | None, done: int, *, visible: bool = True) -> Any:
        """A transfer of ``name`` begins: ``total`` bytes when known, ``done`` of them already here."""

    def advance(self, handle: Any, n: int) -> None:
        """``n`` more bytes of the transfer arrived."""

    def finish(self, handle: Any) -> None:
        """The transfer ended (completed or not)."""


class RichProgress(Progress):
    """Bars on ``console``: one per running transfer, and ``all files`` (bytes still to fetch)."""

    def __init__(self, console: Console):
        self.bars = RichBars(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                             TransferSpeedColumn(), TimeRemainingColumn(), console=console)
        self._lock = threading.Lock()
        self._files = self._done = self._bytes = 0
        self._overall = self.bars.add_task(self._label(), total=0)

    def __enter__(self) -> RichProgress:
        self.bars.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bars.stop()

    def _label(self) -> str:
        return f"all files ({self._done}/{self._files})"

    def expect(self, files: int) -> None:
        with self._lock:
            self._files += files
            self.bars.update(self._overall, description=self._label())

    def checked(self) -> None:
        with self._lock:
            self._done += 1
            self.bars.update(self._overall, description=self._label())

    def start(self, name: str, total: int | None, done: int, *, visible: bool = True) -> TaskID:
        with self._lock:
            if total is not None:
                self._bytes += total - done
                self.bars.update(self._overall, total=self._bytes)
            return self.bars.add_task(name, total=total, completed=done, visible=visible)

    def advance(self, handle: TaskID, n: int) -> None:
        self.bars.advance(handle, n)
        self.bars.advance(self._overall, n)

    def finish(self, handle: TaskID) -> None:
        self.bars.remove_task(handle)


_active: Progress = Progress()


def active() -> Progress:
    return _active


@contextmanager
def activated(progress: Progress) -> Iterator[Progress]:
    """Make ``progress`` the one the flow's tasks report to, for the duration of the block."""
    global _active
    previous, _active = _active, progress
    try:
        yield progress
    finally:
        _active = previous
