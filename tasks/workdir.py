"""The work directory layout: every stage output lives under one root (default ``work/``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workdir:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Workdir:
        return cls(Path(path).resolve())

    @property
    def interim(self) -> Path:
        return self.root / "interim"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def stamps(self) -> Path:
        return self.root / "stamps"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def release(self) -> Path:
        return self.root / "release"

    @property
    def exports(self) -> Path:
        return self.root / "exports"

    def shards(self, version: str) -> Path:
        return self.root / "shards" / version

    def table(self, name: str) -> Path:
        """An interim table, e.g. ``table("reports")`` -> ``interim/reports.parquet``."""
        return self.interim / f"{name}.parquet"

    def report(self, name: str) -> Path:
        return self.reports / name
