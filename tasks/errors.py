"""Errors that reach the user as one line: what file (and record) was wrong and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad or missing input. ``str(err)`` is a single line naming the file/record and the expectation."""

    def __init__(self, path: str | Path | None, problem: str, *, record: str | None = None,
                 expected: str | None = None):
        self.path = str(path) if path is not None else None
        self.record = record
        self.problem = problem
        self.expected = expected
        parts = []
        if self.path:
            parts.append(self.path)
        if record:
            parts.append(f"record {record}")
        where = ": ".join(parts)
        msg = f"{where}: {problem}" if where else problem
        if expected:
            msg += f" (expected {expected})"
        super().__init__(" ".join(msg.split()))

    def __reduce__(self) -> tuple:
        # rebuilt from its fields, so it crosses process boundaries (parsing workers) intact
        return (_input_error, (self.path, self.problem, self.record, self.expected))


class ConfigError(Exception):
    """A setting in params.yaml or on the command line is missing or invalid (one line)."""


class StageFailure(RuntimeError):
    """A stage ran but part of its work failed (one line; its summary holds the details)."""


def _input_error(path: str | None, problem: str, record: str | None, expected: str | None) -> InputError:
    return InputError(path, problem, record=record, expected=expected)
