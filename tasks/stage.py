"""Stage stamps: the one mechanism that decides whether a stage must run.

After a stage finishes it writes ``<workdir>/stamps/<stage>.json`` holding a key (fingerprints of
its input files, a hash of the settings it reads, a hash of its own code) and fingerprints of the
outputs it wrote. The stage is skipped while the key is unchanged and its outputs are still the
ones it wrote; a crash before the stamp is written, a changed input or setting, or a touched output
makes it run again. The Prefect flows, the CLI and therefore DVC's stages all go through this.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import PIPELINE_VERSION
from .hashing import short_id
from .io import dumps_json, fingerprint, read_json, write_json
from .workdir import Workdir

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


@cache
def code_hash(parts: tuple[str, ...]) -> str:
    """Hash of the Python sources under the given package folders (relative to the checkout)."""
    h = hashlib.sha256(PIPELINE_VERSION.encode())
    for part in parts:
        base = PACKAGE_ROOT / part
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base]
        for path in files:
            if path.exists():
                h.update(path.relative_to(PACKAGE_ROOT).as_posix().encode())
                h.update(path.read_bytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class StageSpec:
    name: str
    inputs: Sequence[Path]
    settings: Mapping[str, Any]
    outputs: Sequence[Path]
    code: tuple[str, ...] = ("tasks",)
    extra_key: Mapping[str, str] = field(default_factory=dict)

    def key(self) -> dict[str, Any]:
        return {
            "stage": self.name,
            "code": code_hash(self.code),
            "settings": short_id(dumps_json(self.settings), length=16),
            "inputs": {str(p): fingerprint(p) for p in self.inputs},
            **dict(self.extra_key),
        }


def stamp_path(wd: Workdir, name: str) -> Path:
    return wd.stamps / f"{name}.json"


def read_stamp(wd: Workdir, name: str) -> dict[str, Any] | None:
    path = stamp_path(wd, name)
    if not path.exists():
        return None
    try:
        return read_json(path)
    except ValueError:
        return None


def is_fresh(spec: StageSpec, wd: Workdir) -> bool:
    stamp = read_stamp(wd, spec.name)
    if stamp is None or stamp.get("key") != spec.key():
        return False
    outputs = stamp.get("outputs", {})
    if set(outputs) != {str(p) for p in spec.outputs}:
        return False
    return all(fingerprint(Path(p)) == fp for p, fp in outputs.items())


def record(spec: StageSpec, wd: Workdir, summary: Mapping[str, Any]) -> None:
    write_json({"key": spec.key(), "outputs": {str(p): fingerprint(p) for p in spec.outputs},
                "summary": dict(summary)}, stamp_path(wd, spec.name))


def invalidate(wd: Workdir, name: str) -> None:
    stamp_path(wd, name).unlink(missing_ok=True)
