"""The stage registry: every stage in one typed table that the CLI, ``build``, the Prefect flows and
``radialog-instruct dvc-yaml`` all read, and every params.yaml section with the code that checks it.

A :class:`Stage` holds its stage function and its ``stage_spec`` (the paths it reads and writes,
defined next to the code that reads and writes them), the params sections its stamp covers (also
dvc.yaml's ``params``), the options its command passes to the stage function, and its retries.
The code a stage's stamp covers is not listed: it is the import closure of the modules holding
those two functions (:mod:`..tasks.import_graph`).

Nothing heavy is imported here, so that a fresh/skip decision or a settings error never pays for
Prefect, torch or Great Expectations: each stage's module is imported on first use by the small
loader function named in its entry (plain imports an editor can follow).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..tasks.config import PARAMS_DIR, check_paths, check_top_level, dotted
from ..tasks.errors import ConfigError, InputError
from ..tasks.import_graph import code_files
from ..tasks.stage import Freshness, StageSpec, check
from ..tasks.workdir import Workdir

Params = dict[str, Any]
Summary = dict[str, Any]


@dataclass(frozen=True)
class Option:
    """A keyword argument the stage's command passes to the stage function. Options that decide
    *what* a stage writes are settings (a params key, part of the stamp), never options."""

    name: str
    #: passing it (truthy) runs the stage even when its stamp is fresh
    reruns: bool = False


@dataclass(frozen=True)
class StageFunctions:
    spec: Callable[[Params, Workdir], StageSpec]
    run: Callable[..., Summary]


@dataclass(frozen=True)
class Stage:
    name: str
    description: str
    #: imports the stage's module and returns its functions
    functions: Callable[[], StageFunctions]
    #: params keys (sections or dotted sub-keys) the stage reads: its stamp's settings
    sections: tuple[str, ...]
    options: tuple[Option, ...] = ()
    #: retries with exponential backoff (stages that talk to a model or the network)
    retries: int = 0
    in_build: bool = True


# --- the stages ------------------------------------------------------------------------------

def _ingest() -> StageFunctions:
    from ..tasks.sources import ingest
    return StageFunctions(ingest.stage_spec, ingest.run_ingest)


def _label() -> StageFunctions:
    from ..tasks.labeling import stage
    return StageFunctions(stage.stage_spec, stage.run_label)


def _plan() -> StageFunctions:
    from ..tasks.instruct import plan
    return StageFunctions(plan.stage_spec, plan.run_plan)


def _generate() -> StageFunctions:
    from ..tasks.generation import stage
    return StageFunctions(stage.stage_spec, stage.run_generate)


def _audit() -> StageFunctions:
    from ..tasks.quality import audit
    return StageFunctions(audit.stage_spec, audit.run_audit)


def _assemble() -> StageFunctions:
    from ..tasks.storage import assemble
    return StageFunctions(assemble.stage_spec, assemble.run_assemble)


def _validate() -> StageFunctions:
    from ..tasks.quality import validate
    return StageFunctions(validate.stage_spec, validate.run_validate)


def _release() -> StageFunctions:
    from ..tasks.release import physionet
    return StageFunctions(physionet.stage_spec, physionet.run_release)


def _train() -> StageFunctions:
    from ..trainer import stage
    return StageFunctions(stage.stage_spec, stage.run_train)


STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("ingest", "MIMIC-CXR, MIMIC-NLE and Rad-ReStruct -> interim Parquet tables", _ingest,
          ("sources.mimic_cxr", "sources.mimic_nle", "sources.rad_restruct")),
    Stage("label", "CheXpert labels for every study (CheXbert, rules or provided)", _label,
          ("label", "sources.predictions"), retries=2, options=(Option("compare", reruns=True),)),
    Stage("plan", "Decide every sample of the ten tasks", _plan, ("plan", "seed")),
    Stage("generate", "Pseudo ground truth for the replay tasks, mapped over generation shards", _generate,
          ("generate",), retries=2, options=(Option("shard"),)),  # (i, n): the generate flow maps the shards
    Stage("audit", "Re-label pseudo labels and judge their faithfulness", _audit,
          ("audit", "label", "generate", "plan", "seed")),
    Stage("assemble", "Plan + generations + audit -> versioned shards and exports", _assemble,
          ("seed", "plan", "label", "generate", "assemble", "audit")),
    Stage("validate", "Great Expectations suite over every shard", _validate,
          ("validate", "assemble.version", "assemble.exclude_failed_audit")),
    Stage("release", "PhysioNet release folder with dataset card, checksums and PHI scan", _release,
          ("release", "assemble.version", "sources.mimic_cxr", "sources.mimic_nle", "sources.rad_restruct")),
    Stage("train", "LoRA fine-tuning from the shards", _train, ("train", "seed", "assemble.version"),
          in_build=False, options=(Option("resume"),)),
)}

#: The dataset build, in dependency order (training is opt-in).
BUILD_ORDER: tuple[str, ...] = tuple(name for name, s in STAGES.items() if s.in_build)


# --- the settings ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """A top-level key of params.yaml (or a dotted sub-key with a reader of its own)."""

    key: str
    #: reads and checks the section (a typed dataclass via ``tasks.config.section``); raises ConfigError
    load: Callable[[Params], object]
    #: dotted keys of paths that must exist (when set) before a stage reading this section runs
    paths: tuple[str, ...] = ()


def _workdir(params: Params) -> object:
    value = params.get("workdir")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"params: workdir must be a folder name (string), got {value!r}")
    return value


def _seed(params: Params) -> object:
    value = params.get("seed")
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(f"params: seed must be an integer, got {value!r}")
    return value


def _sources(params: Params) -> object:
    from ..tasks.sources.ingest import load_config
    return load_config(params)


def _label_section(params: Params) -> object:
    from ..tasks.labeling.stage import label_config
    return label_config(params)


def _plan_section(params: Params) -> object:
    from ..tasks.instruct.plan import load_config
    return load_config(params)


def _generate_section(params: Params) -> object:
    from ..tasks.generation.config import load_config
    return load_config(params)


def _audit_section(params: Params) -> object:
    from ..tasks.quality.audit import load_config
    return load_config(params)


def _assemble_section(params: Params) -> object:
    from ..tasks.storage.assemble import load_config
    return load_config(params)


def _validate_section(params: Params) -> object:
    from ..tasks.quality.validate import load_config
    return load_config(params)


def _release_section(params: Params) -> object:
    from ..tasks.release.physionet import load_config
    return load_config(params)


def _train_section(params: Params) -> object:
    from ..trainer.config import load_config
    return load_config(params)


#: Every section params.yaml may hold, checked in this order before any stage runs. A new section
#: (e.g. ``sources.physionet``) is registered here with the function that reads it.
SECTIONS: tuple[Section, ...] = (
    Section("workdir", _workdir),
    Section("seed", _seed),
    Section("sources", _sources, paths=("sources.mimic_cxr.reports", "sources.mimic_cxr.jpg_root",
                                        "sources.mimic_nle.dir", "sources.rad_restruct.dir", "sources.predictions")),
    Section("label", _label_section, paths=("label.chexbert.checkpoint",)),
    Section("plan", _plan_section, paths=("plan.templates_dir",)),
    Section("generate", _generate_section),
    Section("audit", _audit_section),
    Section("assemble", _assemble_section),
    Section("validate", _validate_section),
    Section("release", _release_section),
    Section("train", _train_section, paths=("train.features.path",)),
)


def validate_params(params: Params, stages: Sequence[str]) -> None:
    """Check the whole params file before any work: top-level keys, every section's keys, types and
    ranges, the paths that the given stages read, and the source layouts when ``ingest`` is among
    them. The first problem is raised as a one-line ConfigError / InputError."""
    check_top_level(params, [s.key for s in SECTIONS if "." not in s.key])
    for section in SECTIONS:
        section.load(params)
    read = {key for name in stages for key in STAGES[name].sections}
    for section in SECTIONS:
        check_paths(params, [p for p in section.paths if any(p == k or p.startswith(k + ".") for k in read)])
    if "ingest" in stages:
        from ..tasks.sources.ingest import check_layout, load_config
        check_layout(load_config(params))


# --- specs and stamps ------------------------------------------------------------------------

@cache
def stage_code(name: str) -> tuple[Path, ...]:
    """The files the stage's stamp covers: the import closure of its two functions' modules."""
    fns = STAGES[name].functions()
    return tuple(code_files({fns.spec.__module__, fns.run.__module__}))


def settings_of(stage: Stage, params: Params) -> dict[str, Any]:
    return {key: dotted(params, key) for key in stage.sections}


def stage_spec(name: str, params: Params, wd: Workdir) -> StageSpec:
    """The complete spec of stage ``name``: its module's paths plus settings and code."""
    stage = STAGES[name]
    spec = stage.functions().spec(params, wd)
    base = params.get(PARAMS_DIR)
    return dataclasses.replace(spec, settings=settings_of(stage, params), code=stage_code(name),
                               params_dir=Path(base) if base else None)


def freshness(name: str, params: Params, wd: Workdir) -> tuple[StageSpec, Freshness]:
    spec = stage_spec(name, params, wd)
    return spec, check(spec, wd)


def skipped_summary(state: Freshness) -> Summary:
    return {**state.summary, "skipped": True}


def check_options(name: str, options: dict[str, Any]) -> None:
    known = {o.name for o in STAGES[name].options}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(f"{name}: unknown option(s) {', '.join(unknown)} (known: {', '.join(sorted(known)) or 'none'})")


def forced_by_options(name: str, options: dict[str, Any]) -> bool:
    return any(o.reruns and options.get(o.name) for o in STAGES[name].options)


def why_run(name: str, state: Freshness, *, force: bool, options: dict[str, Any]) -> str | None:
    """Why stage ``name`` runs (its stamp's reasons, ``--force`` or a rerunning option); None when
    it is up to date."""
    if not state.fresh:
        return str(state)
    if force:
        return "forced (--force)"
    return "forced by an option" if forced_by_options(name, options) else None


def producer(path: str | None, params: Params, wd: Workdir) -> str | None:
    """The stage whose declared outputs hold ``path`` (None when no stage writes it)."""
    if not path:
        return None
    target = Path(path).resolve()
    for name in STAGES:
        try:
            spec = STAGES[name].functions().spec(params, wd)
        except (ConfigError, InputError):
            continue
        if any(target == p or target.is_relative_to(p) for p in [*spec.outputs, *spec.persistent]):
            return name
    return None
