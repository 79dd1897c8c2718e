"""Settings: ``params.yaml`` (DVC's params file), ``--set key=value`` overrides and the demo overlay.

Each stage reads one section into a frozen dataclass of its own (:func:`section`), so a typo in a
key is an error that names the key, and :func:`section_hash` identifies exactly the settings a
stage depends on. The stage registry checks every section up front (``flows.registry.SECTIONS``)
with :func:`check_top_level` and :func:`check_paths`.

The defaults (``params.yaml``), the prompt templates and the demo corpus ship inside the package:
:data:`PROJECT_ROOT` is the checkout in an editable install and the installed ``radialog_instruct``
folder otherwise, with the same layout, so ``--demo`` and the defaults work from any folder.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from .errors import ConfigError
from .hashing import short_id
from .io import dumps_json

T = TypeVar("T")

#: The package root: holds params.yaml, prompt_templates/ and data/demo/ (and, in a checkout, dvc.yaml).
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEMO_ROOT = PROJECT_ROOT / "data" / "demo"

#: What ``--demo`` changes: the bundled synthetic corpus and the tiny local generator.
DEMO_OVERLAY: dict[str, Any] = {
    "sources": {
        "mimic_cxr": {"reports": str(DEMO_ROOT / "mimic-cxr"), "jpg_root": str(DEMO_ROOT / "mimic-cxr-jpg")},
        "mimic_nle": {"dir": str(DEMO_ROOT / "mimic-nle")},
        "rad_restruct": {"dir": str(DEMO_ROOT / "rad-restruct" / "data" / "radrestruct")},
        "predictions": None,
    },
    "label": {"labeler": "rules"},
    "generate": {"model_preset": "demo-tiny", "backend": "transformers", "model": None, "revision": None,
                 "transformers": {"batch_size": 32}},
    "train": {"base_model": "demo-tiny", "revision": None, "grad_accum": 8, "warmup_steps": 5},
}

#: Settings holding file paths: relative values are resolved against the params file's folder
#: (URLs are left as they are).
PATH_KEYS = ("sources.mimic_cxr", "sources.mimic_nle", "sources.rad_restruct", "sources.predictions",
             "sources.physionet.mimic_nle_queries", "sources.physionet.rad_restruct_archive",
             "label.chexbert.checkpoint", "plan.templates_dir", "train.features.path")

#: Set by :func:`load_params`: the folder of the params file (stamps name paths relative to it).
PARAMS_DIR = "_params_dir"


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_override(item: str) -> tuple[list[str], Any]:
    """``"a.b.c=value"`` -> (["a","b","c"], value parsed as YAML)."""
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set label.labeler=rules")
    key, raw = item.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {item!r}: empty key")
    return path, yaml.safe_load(raw) if raw.strip() else None


def apply_overrides(params: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    params = copy.deepcopy(params)
    for item in overrides:
        path, value = parse_override(item)
        node = params
        for part in path[:-1]:
            if not isinstance(node.get(part), dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(path[:-1])} is not a section of params.yaml")
            node = node[part]
        if path[-1] not in node:
            raise ConfigError(f"--set {item!r}: unknown key {'.'.join(path)} (not in params.yaml)")
        node[path[-1]] = value
    return params


def load_params(path: str | Path | None = None, overrides: Sequence[str] = (), *,
                demo: bool = False) -> dict[str, Any]:
    """Read params.yaml (default: the project's), apply the demo overlay and ``--set`` overrides.

    Relative source paths are resolved against the folder of the params file.
    """
    path = Path(path) if path else PROJECT_ROOT / "params.yaml"
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        params = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    params = _resolve_paths(params, path.parent.resolve())
    if demo:
        params = deep_merge(params, DEMO_OVERLAY)
    return {**apply_overrides(params, overrides), PARAMS_DIR: str(path.parent.resolve())}


def _resolve_paths(params: dict[str, Any], base: Path) -> dict[str, Any]:
    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, str) and node and "://" not in node and not Path(node).is_absolute():
            return str((base / node).resolve())
        return node

    return map_path_settings(params, PATH_KEYS, lambda value, _key: walk(value))


def map_path_settings(params: Mapping[str, Any], keys: Sequence[str],
                      fn: Callable[[Any, str], Any]) -> dict[str, Any]:
    """A copy of ``params`` with the value at each dotted key of ``keys`` that is set replaced by
    ``fn(value, key)``."""
    params = copy.deepcopy(dict(params))
    for key in keys:
        *parents, leaf = key.split(".")
        node = dotted(params, ".".join(parents)) if parents else params
        if isinstance(node, dict) and leaf in node:
            node[leaf] = fn(node[leaf], key)
    return params


def dotted(params: Mapping[str, Any], key: str) -> Any:
    """The value at dotted ``key`` (``"assemble.version"``); None when any part is missing."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def check_top_level(params: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = sorted(set(params) - set(known) - {PARAMS_DIR})
    if unknown:
        raise ConfigError(f"params: unknown top-level key(s) {', '.join(map(repr, unknown))} "
                          f"(known: {', '.join(known)})")


def check_paths(params: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Every path setting among ``keys`` that is set must exist."""
    for key in keys:
        value = dotted(params, key)
        if value is not None and not Path(str(value)).exists():
            raise ConfigError(f"params: {key}: {value} does not exist (expected an existing file or folder)")


def section_hash(params: Mapping[str, Any], *keys: str) -> str:
    """Hash of the named top-level sections (e.g. ``"label", "seed"``): what a stage depends on."""
    picked = {k: params.get(k) for k in keys}
    return short_id(dumps_json(picked), length=16)


# --- typed sections ---------------------------------------------------------------------------

def section(cls: type[T], params: Mapping[str, Any], key: str) -> T:
    """Build dataclass ``cls`` from ``params[key]`` (dotted keys allowed), rejecting unknown keys."""
    node: Any = params
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ConfigError(f"params: section {key!r} is missing")
        node = node[part]
    return from_mapping(cls, node or {}, key)


def from_mapping(cls: type[T], data: Mapping[str, Any], where: str) -> T:
    if not isinstance(data, Mapping):
        raise ConfigError(f"params: {where} must be a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"params: unknown key(s) {', '.join(where + '.' + u for u in unknown)}"
                          f" (known: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"params: {where}: {err}") from None


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_mapping(hint, value or {}, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        if len(args) == 1:
            return _coerce(args[0], value, where)
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
        raise ConfigError(f"params: {where} must be {hint.__name__}, got {value!r}")
    if origin in (list, tuple) and value is not None:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params: {where} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(hint) or (Any,)
        items = [_coerce(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict and value is not None and not isinstance(value, Mapping):
        raise ConfigError(f"params: {where} must be a mapping, got {value!r}")
    return value
