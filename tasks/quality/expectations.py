"""The validation suites: Great Expectations 1.x expectations derived from the row contract.

Everything a suite checks comes from the code that defines the data, not from a hand-kept list:
required columns are the non-nullable fields of :data:`schemas.INSTRUCT_SAMPLE`, the value sets are
the tasks of the shards' preset (``manifest.json``; :data:`presets.ALL_TASKS` when it names none) /
:data:`presets.REPLAY_TASKS`, the plan's ``SPLITS`` and the context modes of
:data:`context_dropping.MODES`; the bounds come from the ``validate:`` section and apply to the
preset's tasks only (a bound on a task the preset does not build is reported, not checked). Shards
of the original fidelity may hold empty answers exactly where the original does: complete findings
QA of an image without positive findings, and pseudo labels (the original kept them unaudited).

Per-row properties that GX cannot express on nested columns are computed on Arrow first
(:mod:`.derived`) and validated as plain columns (:data:`DERIVED`).

Four suites run in one :class:`Validator` (an ephemeral GX context: nothing is written to disk and
no GX project folder is needed):

* ``shard`` — every shard file;
* ``ids`` — one row per sample across all shards: ``sample_id`` unique;
* ``studies`` — one row per (study, split) across all shards: ``study_id`` unique, i.e. no study in
  two splits;
* ``counts`` — one row per (split, task): the task's share of the split's rows within
  ``validate.task_share`` and its row count at least ``validate.min_rows``.

``great_expectations`` takes ~5 s to import; it is imported when a :class:`Validator` is built.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ... import schemas
from ..augment.context_dropping import MODES
from ..errors import ConfigError
from ..instruct.plan import SPLITS
from ..instruct.presets import ALL_TASKS, REPLAY_TASKS

#: Columns computed per shard before validation (see the module docstring).
DERIVED = ("shard_split", "messages_ok", "turns_match", "answer_equals_output", "has_generation", "audit_verdict",
           "review_decision")
REQUIRED = tuple(f.name for f in schemas.INSTRUCT_SAMPLE if not f.nullable)
EXAMPLES = 5


@dataclass(frozen=True)
class ValidateConfig:
    #: task -> [min, max] share of a split's rows (tasks not listed are not bounded)
    task_share: dict[str, list[float]] = field(default_factory=dict)
    #: task -> minimum rows in every split (tasks not listed: no minimum)
    min_rows: dict[str, int] = field(default_factory=dict)
    max_instruction_chars: int = 4000
    min_output_chars: int = 1
    max_output_chars: int = 8000


def check_config(cfg: ValidateConfig) -> ValidateConfig:
    unknown = sorted((set(cfg.task_share) | set(cfg.min_rows)) - set(ALL_TASKS))
    if unknown:
        raise ConfigError(f"params: validate has unknown task(s) {', '.join(unknown)} (known: {', '.join(ALL_TASKS)})")
    for task, bounds in cfg.task_share.items():
        if len(bounds) != 2 or not 0 <= bounds[0] <= bounds[1] <= 1:
            raise ConfigError(f"params: validate.task_share.{task} must be [min, max] with 0 <= min <= max <= 1")
    if not 0 <= cfg.min_output_chars <= cfg.max_output_chars or cfg.max_instruction_chars < 1:
        raise ConfigError("params: validate needs 0 <= min_output_chars <= max_output_chars "
                          "and max_instruction_chars >= 1")
    return cfg


def counts_frame(ids: pd.DataFrame, cfg: ValidateConfig, tasks: Sequence[str] = ALL_TASKS) -> pd.DataFrame:
    """One row per (split present, task of ``tasks``): rows, share of the split and the configured
    bounds (absent tasks count 0 rows)."""
    per = ids.groupby(["split", "task"]).size()
    splits = sorted(ids["split"].dropna().unique())
    rows = []
    for split in splits:
        total = int(per.loc[split].sum())
        for task in tasks:
            n = int(per.get((split, task), 0))
            lo, hi = cfg.task_share.get(task, (None, None))
            rows.append({"split": split, "task": task, "rows": n, "share": n / total if total else 0.0,
                         "min_share": lo, "max_share": hi, "min_rows": cfg.min_rows.get(task)})
    frame = pd.DataFrame(rows, columns=["split", "task", "rows", "share", "min_share", "max_share", "min_rows"])
    return frame.astype({"min_rows": "Int64"})


def study_splits(ids: pd.DataFrame) -> pd.DataFrame:
    """Distinct (study_id, split) pairs of the rows that have a study."""
    return ids.dropna(subset=["study_id"]).drop_duplicates(["study_id", "split"])[["study_id", "split"]]


# --- suites ------------------------------------------------------------------------------------

Checks = list[tuple[str, Any]]


def unchecked_bounds(cfg: ValidateConfig, tasks: Sequence[str]) -> list[str]:
    """The ``validate:`` bounds on tasks outside ``tasks`` (the preset's), e.g. ``min_rows.nle``."""
    return [f"{kind}.{task}" for kind, bounds in (("task_share", cfg.task_share), ("min_rows", cfg.min_rows))
            for task in bounds if task not in tasks]


def shard_checks(cfg: ValidateConfig, *, audited: bool, exclude_failed_audit: bool,
                 tasks: Sequence[str] = ALL_TASKS, empty_answers: bool = False) -> Checks:
    """(check name, expectation) of the per-shard suite. ``empty_answers``: the original fidelity's
    empty answers are allowed where the original has them (complete findings QA without positive
    labels; pseudo labels, which it kept unchecked) and nowhere else; the other checks on the
    messages and the output length then apply to the rows with an answer."""
    gxe, Column = _gx().expectations, _gx().Column
    pseudo, other = Column("is_pseudo_label") == True, Column("is_pseudo_label") == False  # noqa: E712
    answered = {"row_condition": Column("output") != ""} if empty_answers else {}
    checks: Checks = [
        ("columns are the row contract's", gxe.ExpectTableColumnsToMatchSet(
            column_set=list(schemas.INSTRUCT_SAMPLE.names) + list(DERIVED), exact_match=True)),
        ("shard has rows", gxe.ExpectTableRowCountToBeBetween(min_value=1)),
        *[(f"{name} is set", gxe.ExpectColumnValuesToNotBeNull(column=name)) for name in REQUIRED],
        ("task is known", gxe.ExpectColumnValuesToBeInSet(column="task", value_set=list(tasks))),
        ("split is known", gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS))),
        ("split matches the shard's folder", gxe.ExpectColumnPairValuesToBeEqual(
            column_A="split", column_B="shard_split")),
        ("context_mode is known", gxe.ExpectColumnValuesToBeInSet(column="context_mode", value_set=list(MODES))),
        ("sample_id unique in shard", gxe.ExpectColumnValuesToBeUnique(column="sample_id")),
        ("instruction length in bounds", gxe.ExpectColumnValueLengthsToBeBetween(
            column="instruction", min_value=1, max_value=cfg.max_instruction_chars)),
        ("output length in bounds", gxe.ExpectColumnValueLengthsToBeBetween(
            column="output", min_value=cfg.min_output_chars, max_value=cfg.max_output_chars, **answered)),
        ("messages well formed", gxe.ExpectColumnValuesToBeInSet(column="messages_ok", value_set=[True], **answered)),
        ("messages = history + instruction + answer", gxe.ExpectColumnValuesToBeInSet(
            column="turns_match", value_set=[True])),
        ("last answer equals output", gxe.ExpectColumnValuesToBeInSet(column="answer_equals_output", value_set=[True])),
        ("pseudo labels only on replay tasks", gxe.ExpectColumnValuesToBeInSet(
            column="task", value_set=list(REPLAY_TASKS), row_condition=pseudo)),
        ("replay tasks are pseudo labels", gxe.ExpectColumnValuesToBeInSet(
            column="task", value_set=[t for t in ALL_TASKS if t not in REPLAY_TASKS], row_condition=other)),
        ("generation provenance on pseudo-label rows", gxe.ExpectColumnValuesToBeInSet(
            column="has_generation", value_set=[True], row_condition=pseudo)),
        ("no generation provenance on other rows", gxe.ExpectColumnValuesToBeNull(
            column="generation", row_condition=other)),
    ]
    if empty_answers:
        empty = Column("output") == ""
        checks += [
            ("empty answers only on findings QA or pseudo labels", gxe.ExpectColumnValuesToBeInSet(
                column="task", value_set=["findings_qa", *REPLAY_TASKS], row_condition=empty)),
            ("empty findings-QA answers only in complete mode", gxe.ExpectColumnValuesToBeInSet(
                column="task_mode", value_set=["complete"], row_condition=empty & (Column("task") == "findings_qa"))),
        ]
    if audited:
        checks.append(("audit verdict on pseudo-label rows", gxe.ExpectColumnValuesToNotBeNull(
            column="audit_verdict", row_condition=pseudo)))
    if exclude_failed_audit:
        checks.append(("no row that failed the audit unless a person accepted it", gxe.ExpectColumnValuesToBeInSet(
            column="audit_verdict", value_set=["pass"], row_condition=Column("review_decision") != "accept")))
    checks.append(("no row a person rejected", gxe.ExpectColumnValuesToBeInSet(
        column="review_decision", value_set=["none", "accept"])))
    return checks


def id_checks() -> Checks:
    gxe = _gx().expectations
    return [("sample_id unique across shards", gxe.ExpectColumnValuesToBeUnique(column="sample_id"))]


def study_checks() -> Checks:
    gxe = _gx().expectations
    return [("no study in two splits", gxe.ExpectColumnValuesToBeUnique(column="study_id"))]


def count_checks(cfg: ValidateConfig, tasks: Sequence[str] = ALL_TASKS) -> Checks:
    gx = _gx()
    checks: Checks = []
    for task in tasks:
        is_task = gx.Column("task") == task
        if task in cfg.task_share:
            lo, hi = cfg.task_share[task]
            checks.append((f"share of {task} per split in [{lo}, {hi}]", gx.expectations.ExpectColumnValuesToBeBetween(
                column="share", min_value=lo, max_value=hi, row_condition=is_task)))
        if task in cfg.min_rows:
            checks.append((f"rows of {task} per split >= {cfg.min_rows[task]}",
                           gx.expectations.ExpectColumnValuesToBeBetween(
                               column="rows", min_value=cfg.min_rows[task], row_condition=is_task)))
    return checks


# --- running -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class _GX:
    gx: Any
    expectations: Any
    Column: Any


def _gx() -> _GX:
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column
    return _GX(gx, gxe, Column)


def _exception(info: Any) -> str | None:
    """The message of a result's ``exception_info`` (GX uses two shapes; see the research notes)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [v.get("exception_message") for v in info.values() if isinstance(v, dict) and v.get("exception_message")]
    return str(nested[0]) if nested else None


@dataclass(frozen=True)
class CheckResult:
    check: str
    expectation: str
    success: bool
    unexpected_count: int | None = None
    observed: Any = None
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def line(self) -> str:
        """e.g. ``messages well formed (3 rows: 0a1b, 2c3d)``."""
        if self.error:
            return f"{self.check} (error: {self.error})"
        detail = f"{self.unexpected_count} rows" if self.unexpected_count else f"observed {self.observed}"
        shown = ", ".join(map(str, self.examples[:3]))
        return f"{self.check} ({detail}{': ' + shown if shown else ''})"


@dataclass(frozen=True)
class SuiteResult:
    success: bool
    checks: list[CheckResult]
    gx: dict[str, Any]

    @property
    def failed(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.success]

    def to_json(self) -> dict[str, Any]:
        return {"success": self.success, "checks": [c.__dict__ for c in self.checks], "gx": self.gx}


class Validator:
    """One ephemeral GX context holding a validation definition per suite."""

    def __init__(self) -> None:
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = _gx().gx
        self.context = self._gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        asset = self.context.data_sources.add_pandas(name="radialog").add_dataframe_asset(name="frame")
        self._batch = asset.add_batch_definition_whole_dataframe(name="whole")
        self._suites: dict[str, tuple[Any, dict[str, str], Sequence[str]]] = {}

    def add_suite(self, name: str, checks: Checks, *, key_columns: Sequence[str]) -> None:
        """Register a suite; ``key_columns`` identify failing rows in the results."""
        suite = self.context.suites.add(self._gx.ExpectationSuite(name=name))
        names = {suite.add_expectation(expectation).id: check for check, expectation in checks}
        definition = self.context.validation_definitions.add(
            self._gx.ValidationDefinition(name=name, data=self._batch, suite=suite))
        self._suites[name] = (definition, names, key_columns)

    def run(self, name: str, frame: pd.DataFrame) -> SuiteResult:
        definition, names, keys = self._suites[name]
        result = definition.run(batch_parameters={"dataframe": frame}, result_format={
            "result_format": "SUMMARY", "unexpected_index_column_names": list(keys)})
        order = {check: i for i, check in enumerate(names.values())}
        checks = sorted((_check_result(r, names, keys) for r in result.results), key=lambda c: order[c.check])
        return SuiteResult(bool(result.success), checks, result.to_json_dict())


def _check_result(result: Any, names: dict[str, str], keys: Sequence[str]) -> CheckResult:
    raw = result.result or {}
    rows = raw.get("partial_unexpected_index_list") or []
    examples = [("/".join(str(r.get(k)) for k in keys) if isinstance(r, dict) else r) for r in rows[:EXAMPLES]]
    observed = raw.get("observed_value")
    return CheckResult(
        check=names[result.expectation_config.id], expectation=result.expectation_config.type,
        success=bool(result.success), unexpected_count=raw.get("unexpected_count"),
        observed=observed if isinstance(observed, (int, float, str, bool, type(None))) else str(observed),
        examples=examples, error=_exception(result.exception_info))

