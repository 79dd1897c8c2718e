"""The audit stage: is each pseudo label faithful to its report?

Every replay row of the plan (region QA, easy language, summarization, correction) gets its
generated answer from the generation cache (by request hash, as the assemble stage finds it),
the answer is re-labelled with the configured labeler (``audit.labeler``, default the label
stage's; through the per-text label cache) and compared with the labels of its source study (the
labels table, by ``study_id``). The result is one ``audit`` struct per row
(:data:`schemas.AUDIT_TYPE`) in ``interim/audit.parquet`` (``sample_id``, ``task``, the
``request_hash`` of the judged answer, ``audit``; the labeler and why it was chosen in the file's
metadata), which the assemble stage joins: rows whose verdict is "fail" go to the exclusion shards
with their reasons unless a person accepted them (:mod:`.review`). The assemble stage also renders
the report (``reports/audit-summary.json``, ``audit.html``, ``audit.md``; :mod:`.audit_report`):
it holds the human decisions too, so a new decision updates the report's "audit vs. human" table
without labelling anything again. The plan is read row group by row group and the verdicts are
written as they are made, so memory holds one row group's replay rows, not every answer.

Rules. Labels are 1 positive, 0 negative, -1 uncertain, NaN blank; a finding is one of the 13
CheXpert findings (No Finding is ignored, Support Devices counts like the others). "Source" are
the study's positive findings; "positive" / "uncertain" below are the answer's labels.

* summarization: kept = source findings positive in the answer; dropped = source findings not
  positive in it; added = positive in the answer but not in the source. Pass when nothing is
  dropped or added (reasons ``dropped: ...`` / ``added: ...``). CheXpert's hierarchy
  (:data:`.verdicts.CHILDREN`) holds for every task but region QA: a parent (Lung Opacity,
  Enlarged Cardiomediastinum) is not dropped while one of its children is kept, nor added while
  the source has one ("opacity consistent with atelectasis" -> "atelectasis").
* easy language: as summarization, except that an uncertain answer label keeps a source finding:
  plain-language paraphrases ("may have fluid") often fall outside the labeler's vocabulary of
  certainty, and hedging is not a contradiction.
* correction: the corrected report should contain exactly the study's own positives. The findings
  the instruction asked to add or remove are recomputed as in :mod:`tasks.instruct.correction`:
  the positives of the erroneous report (``gen_messages[1]``, re-labelled) against the study's
  positives (value 1, else not). Kept = source findings positive or uncertain in the answer.
  Reasons: ``not added: ...`` (requested additions missing), ``not removed: ...`` (requested
  removals still positive), ``dropped: ...`` (other source findings lost), ``added: ...`` (other
  new positives).
* region QA: only the findings of the row's region (``task_mode``; ``regions`` of
  ``prompt_templates/region_qa.yaml``) count. Fail with ``added: ...`` when the answer asserts a
  positive finding of the region that the source lacks; fail with ``dropped: ...`` when the source
  has positive findings in the region and the answer neither mentions one of the region's findings
  as positive or uncertain nor acknowledges an abnormality (:func:`acknowledges_abnormality`: the
  words "abnormal(ity)" / "unhealthy" / "not normal" outside a negation, or a leading "Yes," to a
  question about abnormalities, or a leading "No," to one asking whether the region is
  normal/healthy). An answer that only claims an abnormality without naming one is not counted as
  an addition (the labeler cannot tell what it claims).

Flags, on every replay row, each a reason that fails the row: ``empty output`` (then no other
rule is evaluated), ``truncated`` (finish reason "length"), ``echoed prompt`` (the answer starts
with "Report:", contains the generator's instruction line, or contains at least
``audit.echo_threshold`` of the prompt's word trigrams) and ``non-English`` (letters mostly
non-ASCII, no letters at all, or - from ``english_min_words`` words on - too few English function
words; offline and deliberately simple).

Known limits: the audit is only as good as the labeler: findings phrased outside its vocabulary
count as dropped (false failures; they are excluded, never silently kept), and a contradiction the
labeler cannot see passes. With ``label.labeler: provided`` the source labels are MIMIC's CheXpert
labels (mostly from the impression) while the answers are labelled by a text labeler; prefer a
text labeler for both.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import schemas
from ..config import section
from ..errors import ConfigError, InputError
from ..generation.cache import cache_dir
from ..generation.results import answers, cached_at, generation_cache, plan_file, plan_hashes
from ..instruct import plan as plan_stage
from ..instruct.columns import parts_of
from ..instruct.presets import CORRECTION, EASY_LANGUAGE, REGION_QA, REPLAY_TASKS, SUMMARIZATION
from ..instruct.templates import load_templates, template_files
from ..io import parquet_writer, read_parquet
from ..labeling.cache import label_texts_cached
from ..labeling.conditions import CONDITION_COLUMNS, CONDITIONS, FINDINGS
from ..labeling.selection import build_labeler, chexbert_files, choose_labeler
from ..labeling.stage import label_config
from ..stage import StageSpec
from ..workdir import Workdir
from .audit_report import LABELER_KEY, LABELER_REASON_KEY
from .review.decisions import reviews_dir
from .verdicts import (
    ADDED,
    DROPPED,
    ECHO,
    EMPTY,
    NON_ENGLISH,
    NOT_ADDED,
    NOT_REMOVED,
    TRUNCATED,
    implied_parents,
)

AUDIT_TABLE = pa.schema([("sample_id", pa.string()), ("task", pa.string()), ("request_hash", pa.string()),
                         ("audit", schemas.AUDIT_TYPE)])

_FINDING_COLUMNS = np.array([CONDITIONS.index(c) for c in FINDINGS])
_FINDING_NAMES = np.array(FINDINGS, dtype=object)
_WORD = re.compile(r"[a-z0-9]+")
_LETTERS = re.compile(r"[^\W\d_]", re.UNICODE)
ENGLISH_FUNCTION_WORDS = frozenset(
    "a an the and or but nor of in on at to for with without from by as into than then there here this that "
    "these those it its is are was were be been being has have had do does did no not any all both each some "
    "which who what when where while may might can could will would should also only very more most less".split())
_ABNORMAL = re.compile(r"\b(?:abnormal(?:ity|ities)?|unhealthy|not\s+(?:normal|healthy))\b")
_NEGATION_BEFORE = re.compile(r"\b(?:no|not|without|neither|nor|free of|negative for)\b(?:\W+\w+){0,3}\W*$")
_YES_NO = re.compile(r"^\W*(yes|no)\b\s*[,.;:!]")
_ASKS_NORMAL = re.compile(r"\b(?:normal|healthy)\b")


@dataclass(frozen=True)
class AuditConfig:
    #: chexbert | rules | auto; null = the label stage's labeler (auto when that is "provided")
    labeler: str | None = None
    echo_threshold: float = 0.7
    english_min_ascii: float = 0.9
    english_min_function_words: float = 0.05
    english_min_words: int = 8
    examples_per_reason: int = 3


def load_config(params: dict[str, Any]) -> AuditConfig:
    cfg = section(AuditConfig, params, "audit")
    if cfg.labeler not in (None, "auto", "chexbert", "rules"):
        raise ConfigError(f"params: audit.labeler must be auto, chexbert, rules or null, got {cfg.labeler!r}")
    if not 0 < cfg.echo_threshold <= 1 or not 0 <= cfg.english_min_ascii <= 1 \
            or not 0 <= cfg.english_min_function_words <= 1:
        raise ConfigError("params: audit.echo_threshold must be in (0, 1], english_min_ascii and "
                          "english_min_function_words in [0, 1]")
    if cfg.examples_per_reason < 0 or cfg.english_min_words < 1:
        raise ConfigError("params: audit.examples_per_reason must be >= 0 and english_min_words >= 1")
    return cfg


def requested_labeler(params: dict[str, Any]) -> str:
    """The labeler name the audit asks for: its own setting, else the label stage's."""
    name = load_config(params).labeler or label_config(params).labeler
    return "auto" if name == "provided" else name


# --- texts -------------------------------------------------------------------------------------

def _turns(cell: Any) -> list[dict[str, str]]:
    return [] if cell is None or isinstance(cell, float) else [dict(m) for m in cell]


def prompt_of(gen_messages: Any) -> str:
    """The generator's final instruction (the last user turn)."""
    users = [m["content"] for m in _turns(gen_messages) if m["role"] == "user"]
    return users[-1] if users else ""


def before_text(gen_messages: Any) -> str:
    """What the answer is judged against: the prompt, preceded by the report to correct if any."""
    turns = _turns(gen_messages)
    return "\n\n".join(m["content"] for m in turns[1:]) if len(turns) > 1 else prompt_of(gen_messages)


def before_texts(gen_messages: pa.ListArray | pa.ChunkedArray) -> pa.Array:
    """:func:`before_text` of every row, column-wise: the turns after the first joined by a blank
    line, or (one turn or none) the last user turn's content, "" without one."""
    offsets, roles, contents = parts_of(gen_messages)
    lengths = np.diff(offsets)
    owner = np.repeat(np.arange(len(lengths)), lengths)
    later = np.arange(len(roles)) > offsets[:-1][owner]  # every turn but each row's first
    kept = np.concatenate([[0], np.cumsum(np.bincount(owner[later], minlength=len(lengths)))]).astype(np.int32)
    joined = pc.binary_join(pa.ListArray.from_arrays(pa.array(kept), contents.filter(pa.array(later))), "\n\n")
    single = np.flatnonzero(lengths == 1)
    alone = np.zeros(len(lengths), dtype=bool)  # rows whose only turn is the user's
    alone[single] = np.asarray(pc.equal(roles, "user").to_numpy(zero_copy_only=False), dtype=bool)[offsets[single]]
    at = np.where(alone, offsets[:-1], 0)
    prompt = pc.fill_null(contents.take(pa.array(at, mask=~alone)), "") if len(contents) else \
        pa.array([""] * len(lengths), pa.string())
    return pc.if_else(pa.array(lengths > 1), joined, prompt)


def _normal(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def _trigrams(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return set(zip(words, words[1:], words[2:]))


def echo_ratio(prompt: str, output: str) -> float:
    """Share of the prompt's word trigrams that reappear in the output."""
    source = _trigrams(prompt)
    return len(source & _trigrams(output)) / len(source) if source else 0.0


def is_echo(prompt: str, output: str, threshold: float) -> bool:
    instruction = _normal(prompt.strip().splitlines()[-1]) if prompt.strip() else ""
    return (output.lstrip().lower().startswith("report:")
            or (len(instruction.split()) >= 3 and instruction in _normal(output))
            or echo_ratio(prompt, output) >= threshold)


def is_english(text: str, cfg: AuditConfig) -> bool:
    letters = _LETTERS.findall(text)
    if not letters or sum(c.isascii() for c in letters) / len(letters) < cfg.english_min_ascii:
        return False
    words = re.findall(r"[a-z]+", text.lower())
    if len(words) < cfg.english_min_words:
        return True
    return sum(w in ENGLISH_FUNCTION_WORDS for w in words) / len(words) >= cfg.english_min_function_words


def acknowledges_abnormality(question: str, answer: str) -> bool:
    """The region-QA heuristic of the module docstring."""
    text = answer.lower()
    for match in _ABNORMAL.finditer(text):
        sentence_start = max(text.rfind(p, 0, match.start()) for p in ".;!?\n") + 1
        if match.group().startswith("not ") or not _NEGATION_BEFORE.search(text[sentence_start:match.start()]):
            return True
    yes_no = _YES_NO.match(text)
    if yes_no is None:
        return False
    return (yes_no.group(1) == "yes") != bool(_ASKS_NORMAL.search(question.lower()))


def flags(output: str, prompt: str, finish_reason: str | None, cfg: AuditConfig) -> list[str]:
    if not output.strip():
        return [EMPTY]
    out = [TRUNCATED] if finish_reason == "length" else []
    if is_echo(prompt, output, cfg.echo_threshold):
        out.append(ECHO)
    if not is_english(output, cfg):
        out.append(NON_ENGLISH)
    return out


# --- label comparison --------------------------------------------------------------------------

def positive(values: np.ndarray) -> np.ndarray:
    """(n, 13) finding is positive (value 1)."""
    return values[:, _FINDING_COLUMNS] == 1


def present(values: np.ndarray) -> np.ndarray:
    """(n, 13) finding is positive or uncertain."""
    return np.isin(values[:, _FINDING_COLUMNS], (1, -1))


def region_masks(task_modes: Sequence[Any], regions: dict[str, list[str]]) -> np.ndarray:
    """(n, 13) findings of each row's region; unknown regions are an input error."""
    unknown = sorted({str(m) for m in task_modes if m not in regions})
    if unknown:
        raise InputError("plan", f"region QA rows with unknown region(s) {', '.join(unknown)}",
                         expected="a region of prompt_templates/region_qa.yaml: " + ", ".join(regions))
    lookup = {r: np.isin(_FINDING_NAMES, conds) for r, conds in regions.items()}
    return np.array([lookup[m] for m in task_modes], dtype=bool).reshape(len(task_modes), len(FINDINGS))


@dataclass(frozen=True)
class Comparison:
    """(n, 13) boolean masks of one task's rows."""
    source: np.ndarray
    output: np.ndarray
    kept: np.ndarray
    dropped: np.ndarray
    added: np.ndarray
    #: (reason category, mask) pairs whose findings fail the row
    reasons: list[tuple[str, np.ndarray]]


def compare_findings(task: str, source: np.ndarray, output: np.ndarray, *, predicted: np.ndarray | None = None,
                     region: np.ndarray | None = None, acknowledged: np.ndarray | None = None) -> Comparison:
    """The per-task rules of the module docstring over label matrices (n, 14) of one task's rows.

    ``predicted``: labels of the report to correct (correction); ``region``: (n, 13) region masks and
    ``acknowledged``: (n,) answers acknowledging an abnormality (region QA).
    """
    src, out_pos, out_any = positive(source), positive(output), present(output)
    # a parent finding is kept by a more specific child and not added over a source child
    added = out_pos & ~src & ~implied_parents(src)
    if task == SUMMARIZATION:
        kept, dropped = src & out_pos, src & ~out_pos & ~implied_parents(out_pos)
        return Comparison(src, out_pos, kept, dropped, added, [(DROPPED, dropped), (ADDED, added)])
    if task == EASY_LANGUAGE:
        kept, dropped = src & out_any, src & ~out_any & ~implied_parents(out_any)
        return Comparison(src, out_pos, kept, dropped, added, [(DROPPED, dropped), (ADDED, added)])
    if task == CORRECTION:
        if predicted is None:
            raise ValueError("correction needs the labels of the report to correct")
        pred = positive(predicted)
        to_add, to_remove = src & ~pred, pred & ~src
        kept, dropped = src & out_any, src & ~out_any & ~implied_parents(out_any)
        return Comparison(src, out_pos, kept, dropped, added, [
            (NOT_ADDED, dropped & to_add), (NOT_REMOVED, added & to_remove),
            (DROPPED, dropped & ~to_add), (ADDED, added & ~to_remove)])
    if task == REGION_QA:
        if region is None or acknowledged is None:
            raise ValueError("region QA needs region masks and the acknowledgement heuristic")
        src, out_pos, out_any = src & region, out_pos & region, out_any & region
        kept, added = src & out_any, out_pos & ~src
        missed = src.any(axis=1) & ~out_any.any(axis=1) & ~acknowledged
        dropped = src & missed[:, None]
        return Comparison(src, out_pos, kept, dropped, added, [(DROPPED, dropped), (ADDED, added)])
    raise ValueError(f"{task} is not a replay task (expected one of {', '.join(REPLAY_TASKS)})")


def _names(mask: np.ndarray) -> list[str]:
    return list(_FINDING_NAMES[mask])


def audit_rows(frame: pd.DataFrame, source: np.ndarray, output: np.ndarray, predicted: np.ndarray,
               regions: dict[str, list[str]], cfg: AuditConfig, labeler: str) -> list[dict[str, Any]]:
    """One audit struct per row of ``frame`` (replay rows with their answers), row-aligned.

    ``source`` / ``output`` / ``predicted``: (n, 14) labels of the study, the answer and (correction
    rows) the report to correct.
    """
    frame = frame.reset_index(drop=True)
    outputs = frame["output"].fillna("").astype(str).tolist()
    prompts = [prompt_of(g) for g in frame["gen_messages"]]
    finish = [g.get("finish_reason") if isinstance(g, dict) else None for g in frame["generation"]]
    audits: list[dict[str, Any]] = [{}] * len(frame)
    for task, rows in frame.groupby("task", sort=False).indices.items():
        extra: dict[str, Any] = {}
        if task == CORRECTION:
            extra["predicted"] = predicted[rows]
        if task == REGION_QA:
            extra["region"] = region_masks(frame["task_mode"].iloc[rows].tolist(), regions)
            extra["acknowledged"] = np.array([acknowledges_abnormality(frame["instruction"].iat[i], outputs[i])
                                              for i in rows], dtype=bool)
        result = compare_findings(str(task), source[rows], output[rows], **extra)
        for k, i in enumerate(rows):
            reasons = flags(outputs[i], prompts[i], finish[i], cfg)
            if reasons != [EMPTY]:
                reasons += [f"{name}: {', '.join(_names(mask[k]))}" for name, mask in result.reasons if mask[k].any()]
            audits[i] = {
                "verdict": "fail" if reasons else "pass", "reasons": reasons,
                "source_findings": _names(result.source[k]), "output_findings": _names(result.output[k]),
                "kept": _names(result.kept[k]), "added": _names(result.added[k]), "dropped": _names(result.dropped[k]),
                "labeler": labeler,
            }
    return audits


# --- the stage ---------------------------------------------------------------------------------

def stage_spec(params: dict[str, Any], wd: Workdir) -> StageSpec:
    load_config(params)
    templates_dir = plan_stage.load_config(params).templates_dir
    inputs = [wd.table("plan"), wd.table("labels"), cache_dir(wd), *template_files(templates_dir)]
    outputs = [wd.table("audit")]
    label_cfg = label_config(params)
    labeler = choose_labeler(label_cfg, requested_labeler(params)).labeler
    if labeler == "chexbert":
        inputs += chexbert_files(label_cfg.chexbert)
    return StageSpec("audit", inputs, outputs, extra_key={"labeler": labeler})


def study_labels(labels: pd.DataFrame, study_ids: pd.Series) -> np.ndarray:
    """(n, 14) labels of each row's study; a study missing from the labels table is an input error."""
    at = pd.Index(labels["study_id"]).get_indexer(study_ids)
    if (at < 0).any():
        missing = study_ids[at < 0].iloc[0]
        raise InputError("interim/labels.parquet", f"{int((at < 0).sum())} replay rows have no labels",
                         record=f"study_id {missing}", expected="labels for every study of the plan")
    return labels[list(CONDITION_COLUMNS)].to_numpy(np.float32)[at]


REPLAY_COLUMNS = ["sample_id", "task", "task_mode", "study_id", "instruction", "gen_messages"]


def run_audit(params: dict[str, Any], wd: Workdir) -> dict[str, Any]:
    cfg = load_config(params)
    plan = plan_file(wd)
    hashes = plan_hashes(plan, params, wd).column("request_hash")
    cache = generation_cache(wd)
    cache_at = cached_at(hashes, cache, wd)
    label_cfg = label_config(params)
    choice = choose_labeler(label_cfg, requested_labeler(params))
    labeler = build_labeler(choice.labeler, label_cfg)
    labeler_id = f"{labeler.name}@{labeler.version}"
    labels = read_parquet(wd.table("labels"), columns=["study_id", *CONDITION_COLUMNS]).to_pandas()
    regions = load_templates(REGION_QA, plan_stage.load_config(params).templates_dir).extra.get("regions", {})
    schema = AUDIT_TABLE.with_metadata({LABELER_KEY: labeler_id, LABELER_REASON_KEY: choice.reason})
    rows, passed = 0, 0
    with parquet_writer(wd.table("audit"), schema) as writer:
        start = 0
        for g in range(plan.num_row_groups):
            group = plan.read_row_group(g, columns=REPLAY_COLUMNS)
            at = pc.indices_nonzero(group.column("gen_messages").is_valid())
            span = slice(start, start + group.num_rows)
            start += group.num_rows
            if not len(at):
                continue
            replay = group.take(at).to_pandas()
            found = cache_at[span.start:span.stop].take(at)
            replay["output"] = answers(cache, found).to_pylist()
            replay["generation"] = [{"finish_reason": f} for f in cache.column("finish_reason").take(found).to_pylist()]
            audits = audit_batch(replay, labels, labeler, labeler_id, regions, cfg, wd)
            writer.write_table(pa.Table.from_pydict(
                {"sample_id": replay["sample_id"].tolist(), "task": replay["task"].tolist(),
                 "request_hash": hashes[span.start:span.stop].take(at).to_pylist(), "audit": audits}, schema=schema))
            rows += len(audits)
            passed += sum(a["verdict"] == "pass" for a in audits)
    reviews_dir(wd).mkdir(parents=True, exist_ok=True)  # where people's decisions on these rows go
    return {"rows": rows, "passed": passed, "failed": rows - passed,
            "pass_rate": round(passed / rows, 4) if rows else None, "labeler": labeler_id}


def audit_batch(replay: pd.DataFrame, labels: pd.DataFrame, labeler: Any, labeler_id: str,
                regions: dict[str, list[str]], cfg: AuditConfig, wd: Workdir) -> list[dict[str, Any]]:
    """The audit structs of a batch of replay rows with their answers (``output``)."""
    source = study_labels(labels, replay["study_id"])
    output = label_texts_cached(labeler, replay["output"].fillna("").tolist(), wd.cache / "labels")
    is_correction = (replay["task"] == CORRECTION).to_numpy()
    reports_to_correct = [_turns(g)[1]["content"] if c else "" for g, c in zip(replay["gen_messages"], is_correction)]
    predicted = label_texts_cached(labeler, reports_to_correct, wd.cache / "labels")
    return audit_rows(replay, source, output, predicted, regions, cfg, labeler_id)
