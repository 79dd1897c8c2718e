"""Loading the per-task prompt templates (``prompt_templates/<task>.yaml``).

A template file holds ``task``, ``version``, ``kind`` (ground_truth | replay), ``instructions``
(variant lists per mode, strings or ``{text, region, source}`` mappings), and for replay tasks the
``generation`` prompt. A folder of the same files (``plan.templates_dir``) replaces the packaged
ones, e.g. the output of :mod:`.import_original`.

A variant's ``source`` says where its wording comes from: ``paper`` (printed in the RaDialog papers,
appendix C.2), ``paper-adapted`` (a paper prompt reworded; ``paper`` then holds the printed
wording) or ``original`` (imported from a RaDialog checkout); a plain string is the project's own.
Variant texts are ``str.format`` templates (literal braces doubled); whitespace runs are collapsed
unless the file says ``verbatim: true`` (imported strings are kept exactly as the original has them).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..text.conversation import TEMPLATE_PACKAGE, packaged_file, template_file
from .import_original import ORIGIN

KINDS = ("ground_truth", "replay")


@dataclass(frozen=True)
class Variant:
    mode: str
    index: int
    text: str
    region: str | None = None

    def fill(self, **slots: str) -> str:
        """The variant's text with its placeholders filled (and doubled braces undone)."""
        return self.text.format(**slots)


@dataclass(frozen=True)
class TaskTemplates:
    task: str
    version: str
    kind: str
    modes: dict[str, tuple[Variant, ...]]
    generation: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    digest: str = ""

    def variants(self, mode: str = "default") -> tuple[Variant, ...]:
        try:
            return self.modes[mode]
        except KeyError:
            raise InputError(self.source, f"no instruction variants for mode {mode!r}",
                             expected="modes " + ", ".join(self.modes)) from None

    def template_id(self, variant: Variant) -> str:
        """e.g. ``findings_qa/binary#3@1``: task, mode, variant index and template version."""
        return f"{self.task}/{variant.mode}#{variant.index}@{self.version}"


def _parse(data: Any, source: str) -> TaskTemplates:
    if not isinstance(data, dict):
        raise InputError(source, "template file is not a mapping", expected="task, version, kind, instructions")
    missing = [k for k in ("task", "version", "kind", "instructions") if k not in data]
    if missing:
        raise InputError(source, f"missing key(s) {', '.join(missing)}", expected="task, version, kind, instructions")
    if data["kind"] not in KINDS:
        raise InputError(source, f"unknown kind {data['kind']!r}", expected=" or ".join(KINDS))
    instructions = data["instructions"]
    if not isinstance(instructions, dict) or not instructions:
        raise InputError(source, "instructions must map a mode to a list of variants", expected="e.g. default: [...]")
    modes: dict[str, tuple[Variant, ...]] = {}
    tidy = (lambda t: t) if data.get("verbatim") else (lambda t: " ".join(t.split()))
    for mode, items in instructions.items():
        if not isinstance(items, list) or not items:
            raise InputError(source, f"instructions.{mode} must be a non-empty list")
        variants = []
        for i, item in enumerate(items):
            if isinstance(item, str):
                variants.append(Variant(mode, i, tidy(item)))
            elif isinstance(item, dict) and isinstance(item.get("text"), str):
                variants.append(Variant(mode, i, tidy(item["text"]), item.get("region")))
            else:
                raise InputError(source, f"instructions.{mode}[{i}] is neither a string nor {{text, region}}")
        modes[str(mode)] = tuple(variants)
    if data["kind"] == "replay" and not isinstance(data.get("generation"), dict):
        raise InputError(source, "replay task without a generation section", expected="generation: {prompt: ...}")
    extra = {k: v for k, v in data.items() if k not in ("task", "version", "kind", "instructions", "generation",
                                                         "description", "verbatim")}
    return TaskTemplates(task=str(data["task"]), version=str(data["version"]), kind=data["kind"], modes=modes,
                         generation=dict(data.get("generation") or {}), extra=extra, source=source)


@cache
def load_templates(task: str, templates_dir: str | None = None) -> TaskTemplates:
    """The templates of ``task`` from ``templates_dir`` (if given and present) or the package."""
    name = f"{task}.yaml"
    path = template_file(name, templates_dir)
    source = f"prompt_templates/{name}" if path == packaged_file(name) else str(path)
    if not path.is_file():
        raise InputError(source, "template file not found")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(source, f"not valid YAML ({' '.join(str(err).split())})") from None
    templates = _parse(data, source)
    if templates.task != task:
        raise InputError(source, f"declares task {templates.task!r}", expected=repr(task))
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return TaskTemplates(**{**templates.__dict__, "digest": digest})


def template_files(templates_dir: str | None = None) -> list[Path]:
    """Paths of the template files in use (for stage fingerprints)."""
    names = sorted(p.name for p in Path(str(files(TEMPLATE_PACKAGE))).glob("*.yaml"))
    out = [template_file(name, templates_dir) for name in names]
    origin = Path(templates_dir) / ORIGIN if templates_dir else None
    if origin is not None and origin.is_file():  # an imported original (plan.fidelity: auto reads it)
        out.append(origin)
    return out
