"""Generation progress: requests done/total and completion tokens/s.

A rich progress bar when stderr is a terminal; otherwise a plain line on stderr at most every
``interval_s`` seconds and one at the end (readable in CI logs, Prefect's captured prints and
batch job logs).
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TextIO


class GenerationProgress:
    def __init__(self, total: int, done: int = 0, *, label: str = "generate", interval_s: float = 10.0,
                 stream: TextIO | None = None):
        self.total, self.done, self.label = total, done, label
        self.tokens = 0
        self.interval_s = interval_s
        self.stream = stream or sys.stderr
        self.started = time.perf_counter()
        self._last_line = self.started
        self._bar = None
        self._task = None

    @property
    def tokens_per_s(self) -> float:
        elapsed = time.perf_counter() - self.started
        return self.tokens / elapsed if elapsed > 0 else 0.0

    def __enter__(self) -> GenerationProgress:
        if self.stream.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("requests  {task.fields[tps]:>8.1f} tok/s"), TimeElapsedColumn(),
                                 TimeRemainingColumn(), console=Console(file=self.stream))
            self._bar.start()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.done, tps=0.0)
        return self

    def advance(self, requests: int, tokens: int) -> None:
        self.done += requests
        self.tokens += tokens
        if self._bar is not None:
            self._bar.update(self._task, completed=self.done, tps=self.tokens_per_s)
        elif time.perf_counter() - self._last_line >= self.interval_s:
            self._line()

    def _line(self) -> None:
        self._last_line = time.perf_counter()
        share = 100.0 * self.done / self.total if self.total else 100.0
        print(f"{self.label}: {self.done}/{self.total} requests ({share:.1f}%), {self.tokens_per_s:.1f} tok/s",
              file=self.stream, flush=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()
        else:
            self._line()
