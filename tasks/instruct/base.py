"""What every task builder shares: the build context, variant choice, conversation turns, the
assembly of a builder's columns into plan rows, and the original's fuse step (:func:`fuse_rows`).

A builder receives a pandas frame of source rows (one per sample) and returns a frame with the
plan columns of :data:`schemas.PLAN`; ``history`` / ``messages`` / ``gen_messages`` hold lists of
``{"role", "content"}`` dicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from ..augment.context_dropping import contexts, draw_modes
from ..hashing import draws, key_hashes, pick
from ..text.conversation import Conversation, load_conversation
from .fidelity import IMPROVED, ORIGINAL, findings_listing, fuse_text
from .presets import Preset
from .templates import TaskTemplates, Variant, load_templates


@dataclass(frozen=True)
class Keys:
    """Sample keys with their 64-bit hashes, computed once: the hashes seed every per-row draw and,
    in hex, are the rows' ``sample_id``."""

    values: list[str]
    hashes: np.ndarray

    @classmethod
    def of(cls, values: Sequence[str] | pd.Series) -> Keys:
        values = list(values)
        return cls(values, key_hashes(values))

    def __len__(self) -> int:
        return len(self.values)

    def take(self, positions: Sequence[int] | np.ndarray) -> Keys:
        positions = np.asarray(positions, dtype=np.int64)
        return Keys([self.values[i] for i in positions], self.hashes[positions])

    def sample_ids(self) -> list[str]:
        return [f"{h:016x}" for h in self.hashes.tolist()]


@dataclass(frozen=True)
class BuildContext:
    seed: int
    preset: Preset
    splits: tuple[str, ...] = ("train", "validate", "test")
    templates_dir: str | None = None
    #: ``original`` or ``improved`` (resolved; see :mod:`.fidelity`)
    fidelity: str = IMPROVED

    @property
    def original(self) -> bool:
        return self.fidelity == ORIGINAL

    @property
    def conversation(self) -> Conversation:
        return load_conversation(self.templates_dir)

    def templates(self, task: str) -> TaskTemplates:
        return load_templates(task, self.templates_dir)

    def draw(self, purpose: str, keys: Keys | Sequence[str] | pd.Series) -> np.ndarray:
        return draws(self.seed, purpose, keys.hashes if isinstance(keys, Keys) else key_hashes(list(keys)))

    def variants(self, task: str, mode: str, keys: Keys | Sequence[str] | pd.Series) -> list[Variant]:
        """One instruction variant per key, drawn from (seed, task, mode, key)."""
        options = self.templates(task).variants(mode)
        idx = pick(self.draw(f"variant:{task}:{mode}", keys), len(options))
        return [options[i] for i in idx]


def findings_prompt_value(structured_findings: str | None) -> str:
    """The ``Predicted Findings`` text of a report-generation sample: lower-cased positives, or
    "no common findings" (as in the original's report-generation rows)."""
    return findings_listing(structured_findings, original=False)


def report_generation_instruction(ctx: BuildContext, structured_findings: str | None) -> str:
    return _report_generation_prompt(ctx.templates_dir, findings_prompt_value(structured_findings))


@lru_cache(maxsize=65536)
def _report_generation_prompt(templates_dir: str | None, findings: str) -> str:
    (variant,) = load_templates("report_generation", templates_dir).variants("default")[:1]
    return variant.fill(image_prefix=load_conversation(templates_dir).image_prefix, findings=findings)


def report_turns(ctx: BuildContext, structured_findings: str | None, report: str) -> list[dict[str, str]]:
    """The report-generation exchange that report-based tasks carry in their history (its findings
    as :func:`.fidelity.findings_listing` has them)."""
    findings = findings_listing(structured_findings, original=ctx.original)
    return [{"role": "user", "content": _report_generation_prompt(ctx.templates_dir, findings)},
            {"role": "assistant", "content": report}]


def user_turn(ctx: BuildContext, history: list[dict[str, str]], instruction: str) -> str:
    """A conversation without history starts with the image slot."""
    return instruction if history else ctx.conversation.image_prefix + instruction


def conversation_turns(history: list[dict[str, str]], instruction: str, output: str | None) -> list[dict[str, str]]:
    """``messages``: the history, the question, and the answer when there is one."""
    return history + [{"role": "user", "content": instruction}] + (
        [] if output is None else [{"role": "assistant", "content": output}])


def finish(frame: pd.DataFrame, *, task: str, ctx: BuildContext, keys: Keys, history: list[list[dict]],
           instructions: list[str], outputs: list[str | None], template_ids: list[str],
           gen_messages: list[list[dict] | None] | None = None) -> pd.DataFrame:
    """Add the conversation columns to ``frame`` (which carries the row's ids and metadata).

    ``instructions`` are the final user turns as they appear in the conversation; ``outputs`` the
    answers (None for replay rows, whose answer the generator writes).
    """
    out = frame.copy()
    out["task"] = task
    out["history"] = history
    out["instruction"] = instructions
    out["output"] = outputs
    out["messages"] = [conversation_turns(h, q, a) for h, q, a in zip(history, instructions, outputs)]
    out["template_id"] = template_ids
    out["template_version"] = ctx.templates(task).version
    out["gen_messages"] = gen_messages if gen_messages is not None else [None] * len(out)
    out["is_pseudo_label"] = gen_messages is not None
    out["sample_id"] = keys.sample_ids()
    if "context_mode" not in out:
        out["context_mode"] = "full"
    return out


def mimic_meta(rows: pd.DataFrame, keys: Keys, *, task_mode: object = None,
               source_ref: object = None, source: str = "mimic-cxr") -> pd.DataFrame:
    """The id / provenance columns of MIMIC-CXR image rows."""
    return pd.DataFrame({
        "sample_key": keys.values,
        "split": rows["split"].to_numpy(),
        "task_mode": task_mode,
        "source": source,
        "source_ref": source_ref,
        "subject_id": rows["subject_id"].to_numpy(),
        "study_id": rows["study_id"].to_numpy(),
        "dicom_id": rows["dicom_id"].to_numpy(),
        "image_path": rows["image_path"].to_numpy(),
        "view_position": rows["view_position"].to_numpy(),
        "structured_findings": rows["structured_findings"].to_numpy(),
        "labeler": rows["labeler"].to_numpy(),
    })


def keyed(task: str, *parts: pd.Series | str) -> Keys:
    """Stable sample keys ``task:part1:part2...`` (parts are aligned Series or constants)."""
    columns = [p.astype(str).tolist() if isinstance(p, pd.Series) else None for p in parts]
    n = next(len(c) for c in columns if c is not None)
    values = [task] * n
    for part, column in zip(parts, columns):
        values = [f"{v}:{c}" for v, c in zip(values, column)] if column is not None else [f"{v}:{part}" for v in values]
    return Keys.of(values)


def context_histories(ctx: BuildContext, task: str, keys: Keys, rows: pd.DataFrame
                      ) -> tuple[list[list[dict[str, str]]], list[str]]:
    """Each row's history (the report-generation exchange, possibly cut by context dropping) and
    its context mode; tasks without context dropping always get the full context."""
    if task in ctx.preset.context_dropping:
        modes = list(draw_modes(ctx.draw(f"context:{task}", keys)))
    else:
        modes = ["full"] * len(rows)
    texts = contexts(ctx.seed, keys.values, modes, rows["findings"].tolist())
    histories = [[] if text is None else report_turns(ctx, findings, text)
                 for text, findings in zip(texts, rows["structured_findings"].tolist())]
    return histories, modes


def fuse_rows(frame: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The original's fuse step on an instruct task's rows: every history turn and the question
    formatted with ``findings`` = the row's lower-cased positive labels (:func:`.fidelity.fuse_text`).
    Rows on which the original would have stopped (a stray brace) are dropped; returns the rows and
    the number dropped."""
    histories, instructions, keep = [], [], []
    for history, question, structured in zip(frame["history"], frame["instruction"], frame["structured_findings"]):
        findings = findings_listing(structured, original=True)
        texts = [fuse_text(turn["content"], findings) for turn in history] + [fuse_text(question, findings)]
        keep.append(all(t is not None for t in texts))
        histories.append([{"role": turn["role"], "content": t} for turn, t in zip(history, texts)])
        instructions.append(texts[-1])
    out = frame.assign(history=histories, instruction=instructions)
    out["messages"] = [conversation_turns(h, q, a) for h, q, a in zip(out["history"], out["instruction"], out["output"])]
    mask = np.asarray(keep, dtype=bool)
    return out[mask], int((~mask).sum())
