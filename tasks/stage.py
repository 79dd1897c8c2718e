"""Stage stamps: the one mechanism that decides whether a stage must run, and says why.

After a stage finishes it writes ``<workdir>/stamps/<stage>.json`` holding its key - the settings
it reads, fingerprints of its input files, digests of every code file it imports (see
:mod:`.import_graph`) and extra facts such as the resolved labeler - and the size and digest of
every output it wrote. The stage is skipped only while the key is unchanged *and* every output
is still there, byte for byte; otherwise :func:`check` names what changed ("inputs changed: ...",
"code changed: ...", "settings changed: ...", "output missing: ..."). Paths in a stamp are
relative to the work dir, the params file's folder or the installed package
(:func:`.fingerprints.label`), so a moved or copied work dir stays fresh.

The Prefect flows, the CLI and therefore DVC's stages all go through this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import PIPELINE_VERSION
from .errors import StageFailure
from .fingerprints import Fingerprint, file_digest, fingerprint, label, relabel_paths
from .import_graph import PACKAGE_ROOT
from .io import read_json, write_json
from .workdir import Workdir

#: How many names a reason lists before "and N more".
SHOWN = 4


@dataclass(frozen=True)
class StageSpec:
    """What a stage reads and writes. The stage module's ``stage_spec`` gives the paths and extra
    key facts; the stage registry adds the settings it reads and the code it imports."""

    name: str
    inputs: Sequence[Path]
    outputs: Sequence[Path]
    extra_key: Mapping[str, str] = field(default_factory=dict)
    #: folders the stage adds to and never replaces (the generation cache): DVC keeps them
    persistent: Sequence[Path] = ()
    #: outputs known only after a run, read from its summary (generate: the cache chunks it needs)
    produced: Callable[[Mapping[str, Any]], Sequence[Path]] | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    code: Sequence[Path] = ()
    #: the params file's folder: paths below it are stamped relative to it
    params_dir: Path | None = None

    def anchors(self, wd: Workdir) -> list[tuple[str, Path | None]]:
        return [("", wd.root), ("<params>/", self.params_dir), ("<package>/", PACKAGE_ROOT)]

    def key(self, wd: Workdir) -> dict[str, Any]:
        anchors = self.anchors(wd)
        return {
            "pipeline_version": PIPELINE_VERSION,
            "settings": relabel_paths(dict(self.settings), anchors),
            # the work dir's folders are fingerprinted by content, source folders by their listing
            "inputs": {label(p, anchors): fingerprint(p, deep=p.is_relative_to(wd.root)) for p in self.inputs},
            "code": {p.relative_to(PACKAGE_ROOT).as_posix(): file_digest(p)[:16] for p in self.code},
            "extra": dict(self.extra_key),
        }


@dataclass(frozen=True)
class Freshness:
    fresh: bool
    reasons: tuple[str, ...]
    #: the key the check computed (None without a usable stamp): :func:`record` reuses it
    key: dict[str, Any] | None = field(default=None, repr=False)
    #: the summary the stamp holds: what a skipped stage reports
    summary: dict[str, Any] = field(default_factory=dict, repr=False)

    def __str__(self) -> str:
        return "; ".join(self.reasons) if self.reasons else "unchanged"


def stamp_path(wd: Workdir, name: str) -> Path:
    return wd.stamps / f"{name}.json"


def read_stamp(wd: Workdir, name: str) -> dict[str, Any] | None:
    path = stamp_path(wd, name)
    if not path.exists():
        return None
    try:
        stamp = read_json(path)
    except ValueError:
        return None
    return stamp if isinstance(stamp, dict) else None


def _names(items: Sequence[str]) -> str:
    items = sorted(items)
    more = f" and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
    return ", ".join(items[:SHOWN]) + more


def _changed(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [k for k in set(old) | set(new) if old.get(k, ...) != new.get(k, ...)]


def _changed_settings(old: Any, new: Any, where: str = "") -> list[str]:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return [name for k in set(old) | set(new)
                for name in _changed_settings(old.get(k), new.get(k), f"{where}.{k}" if where else str(k))]
    return [] if old == new else [where or "(all)"]


def _key_reasons(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    reasons = []
    if old.get("pipeline_version") != new["pipeline_version"]:
        reasons.append(f"pipeline version changed: {old.get('pipeline_version')} -> {new['pipeline_version']}")
    if changed := _changed_settings(old.get("settings"), new["settings"]):
        reasons.append(f"settings changed: {_names(changed)}")
    if changed := _changed(old.get("inputs") or {}, new["inputs"]):
        reasons.append(f"inputs changed: {_names(changed)}")
    if changed := _changed(old.get("code") or {}, new["code"]):
        reasons.append(f"code changed: {_names(changed)}")
    for name in sorted(_changed(old.get("extra") or {}, new["extra"])):
        reasons.append(f"{name} changed: {(old.get('extra') or {}).get(name)} -> {new['extra'].get(name)}")
    return reasons


def _unlabel(name: str, anchors: Sequence[tuple[str, Path | None]]) -> Path:
    for prefix, root in anchors:
        if root is not None and prefix and name.startswith(prefix):
            return root / name[len(prefix):]
    path = Path(name)
    return path if path.is_absolute() else anchors[0][1] / path  # type: ignore[operator]


def _output_reasons(spec: StageSpec, wd: Workdir, recorded: Mapping[str, Fingerprint]) -> list[str]:
    anchors = spec.anchors(wd)
    wanted = {label(p, anchors) for p in spec.outputs} | set(recorded)
    missing, changed = [], []
    for name in sorted(wanted):
        now = fingerprint(_unlabel(name, anchors))
        if now is None:
            missing.append(name)
        elif now != recorded.get(name):
            changed.append(name)
    reasons = [f"output missing: {_names(missing)}"] if missing else []
    return reasons + ([f"output changed: {_names(changed)}"] if changed else [])


def check(spec: StageSpec, wd: Workdir) -> Freshness:
    """Whether ``spec``'s stage is up to date in ``wd``, and if not, why."""
    stamp = read_stamp(wd, spec.name)
    if stamp is None:
        return Freshness(False, ("first run (no stamp)",))
    old = stamp.get("key")
    if not isinstance(old, dict) or not isinstance(stamp.get("outputs"), dict):
        return Freshness(False, ("stamp of an older format",))
    key = spec.key(wd)
    reasons = _key_reasons(old, key) or _output_reasons(spec, wd, stamp["outputs"])
    return Freshness(not reasons, tuple(reasons), key, stamp.get("summary", {}))


def is_fresh(spec: StageSpec, wd: Workdir) -> bool:
    return check(spec, wd).fresh


def record(spec: StageSpec, wd: Workdir, summary: Mapping[str, Any], key: dict[str, Any] | None = None) -> None:
    """Stamp a finished run: its key and its outputs as they are now. ``key``: the one :func:`check`
    computed before the run (the inputs the run read); computed now when not given, or when an input
    was missing then (the run may have made it: train's demo model)."""
    if key is None or None in key["inputs"].values():
        key = spec.key(wd)
    anchors = spec.anchors(wd)
    outputs = [*spec.outputs, *(spec.produced(summary) if spec.produced else ())]
    fingerprints = {label(p, anchors): fingerprint(p) for p in outputs}
    missing = [name for name, fp in fingerprints.items() if fp is None]
    if missing:
        raise StageFailure(f"{spec.name}: finished without writing {_names(missing)}")
    write_json({"stage": spec.name, "key": key, "outputs": fingerprints,
                "summary": dict(summary)}, stamp_path(wd, spec.name))
