"""The rule labeler's phrase files (``phrases/mentions.yaml``, ``phrases/cues.yaml``) compiled to
regular expressions.

Each phrase list becomes one alternation matched on whole words of the normalised text (see
:func:`.rules.normalize`). A condition's mention pattern tells by its last matched group whether a
match names the finding (``find``/``abn``/``abn2``) or states it is normal (``nrm``/``nrm2``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

import yaml

from ..errors import ConfigError
from .conditions import FINDINGS

#: Word edge after a phrase; also right after a phrase that ends with punctuation (";", "?").
_END = r"(?:(?![a-z0-9])|(?<=[^a-z0-9]))"
#: Start of a word (measured faster with Python's re than ``\\b``).
_WORD_START = r"(?<![a-z0-9])(?=[a-z0-9])"
_LEADING_GROUPS = re.compile(r"^(?:\(\?:)*")
#: Separator of the sentences in the labeler's joined text (never inside a sentence).
SENTENCE_BREAK = "\n"
#: How far a state word may follow its site, with no comma between ("heart size and mediastinal
#: contours are normal").
SITE_GAP_CHARS = 40
#: How many words may stand between a state word and the site it precedes ("enlargement of the heart").
STATE_GAP_WORDS = 3

_MENTION_KEYS = {"mentions", "site", "abnormal", "unremarkable", "exclude"}
_CUE_KEYS = {"version", "post_window", "terminators", "negation_terminators", "finite_verbs", "pseudo", "negation",
             "uncertainty", "double_negation"}


@dataclass(frozen=True)
class ConditionPatterns:
    name: str
    index: int  # position in conditions.CONDITIONS
    mention: re.Pattern[str]
    exclude: re.Pattern[str] | None


@dataclass(frozen=True)
class Grammar:
    conditions: tuple[ConditionPatterns, ...]
    terminator: re.Pattern[str]
    negation_terminator: re.Pattern[str]
    finite_verb: re.Pattern[str]
    pseudo: re.Pattern[str]
    negation_pre: re.Pattern[str]
    negation_post: re.Pattern[str]
    negation_adjacent: re.Pattern[str]
    negation_subject: re.Pattern[str]
    uncertainty_pre: re.Pattern[str]
    uncertainty_post: re.Pattern[str]
    double_negation_pre: re.Pattern[str]
    double_negation_post: re.Pattern[str]
    post_window: int
    version: str  # "m<mentions version>.c<cues version>+<hash of both files>"


def _phrases(items: Any, where: str) -> list[str]:
    if not isinstance(items, list) or not items or not all(isinstance(p, str) and p for p in items):
        raise ConfigError(f"{where}: expected a non-empty list of phrases")
    for phrase in items:
        try:
            compiled = re.compile(phrase)
        except re.error as err:
            raise ConfigError(f"{where}: {phrase!r} is not a valid regular expression ({err})") from None
        if compiled.groups:
            raise ConfigError(f"{where}: {phrase!r} has a capturing group; write (?:...) instead")
    return items


def _alternation(phrases: Sequence[str]) -> str:
    """Longest phrases first, so that at one position the most specific one wins."""
    return "(?:" + "|".join(f"(?:{p})" for p in sorted(phrases, key=len, reverse=True)) + ")"


def _word_initial(phrase: str) -> bool:
    """Whether the phrase starts with a letter or digit (after any opening ``(?:``)."""
    rest = phrase[_LEADING_GROUPS.match(phrase).end():]
    return bool(rest) and rest[0].isalnum()


def _words(phrases: Sequence[str]) -> str:
    """Whole-word alternation. Phrases that start with a letter must start a word; phrases that
    start with punctuation need no start edge."""
    words = [p for p in phrases if _word_initial(p)]
    other = [p for p in phrases if not _word_initial(p)]
    if not other:
        return _WORD_START + _alternation(words) + _END
    branches = ([_WORD_START + _alternation(words)] if words else []) + [_alternation(other)]
    return "(?:" + "|".join(branches) + ")" + _END


def _mention_pattern(spec: Mapping[str, Any], terminator: str, where: str) -> re.Pattern[str]:
    unknown = sorted(set(spec) - _MENTION_KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_MENTION_KEYS))})")
    branches = []
    if "mentions" in spec:
        branches.append(f"(?P<find>{_words(_phrases(spec['mentions'], where + '.mentions'))})")
    if "site" in spec:
        if "abnormal" not in spec and "unremarkable" not in spec:
            raise ConfigError(f"{where}: a site needs a list of abnormal or unremarkable words")
        site = _words(_phrases(spec["site"], where + ".site"))
        abnormal = _words(_phrases(spec["abnormal"], where + ".abnormal")) if "abnormal" in spec else None
        normal = _words(_phrases(spec["unremarkable"], where + ".unremarkable")) if "unremarkable" in spec else None
        states, states2 = _states(abnormal, normal, ""), _states(abnormal, normal, "2")
        site_gap = f"(?:(?!{terminator})[^,{SENTENCE_BREAK}]){{0,{SITE_GAP_CHARS}}}?"
        state_gap = f"(?: (?!{terminator})[^ ,.{SENTENCE_BREAK}]+){{0,{STATE_GAP_WORDS}}}? "
        branches.append(f"{site}{site_gap}(?:{states})")
        branches.append(f"(?:{states2}){state_gap}{site}")
    elif "abnormal" in spec or "unremarkable" in spec:
        raise ConfigError(f"{where}: abnormal/unremarkable words need a site list")
    if not branches:
        raise ConfigError(f"{where}: no mentions and no site")
    return re.compile(_WORD_START + "(?:" + "|".join(branches) + ")")


def _states(abnormal: str | None, normal: str | None, suffix: str) -> str:
    """The abnormal (``abn``) and normal (``nrm``) words as named groups; ``suffix`` keeps the
    names of a second use in one pattern apart."""
    return "|".join(([f"(?P<abn{suffix}>{abnormal})"] if abnormal else [])
                    + ([f"(?P<nrm{suffix}>{normal})"] if normal else []))


def _cue(spec: Mapping[str, Any], key: str, where: str) -> re.Pattern[str]:
    if not isinstance(spec, Mapping) or key not in spec:
        raise ConfigError(f"{where}: missing list {key!r}")
    return re.compile(_words(_phrases(spec[key], f"{where}.{key}")))


def _read_yaml(name: str) -> tuple[dict[str, Any], bytes]:
    path = files(__package__).joinpath("phrases", name)
    data = path.read_bytes()
    try:
        doc = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise ConfigError(f"phrases/{name}: not valid YAML ({' '.join(str(err).split())})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
        raise ConfigError(f"phrases/{name}: expected a mapping with a string `version`")
    return doc, data


@lru_cache(maxsize=1)
def load_grammar() -> Grammar:
    """Read and compile the package's phrase files (once per process)."""
    mentions, mentions_bytes = _read_yaml("mentions.yaml")
    cues, cues_bytes = _read_yaml("cues.yaml")
    unknown = sorted(set(cues) - _CUE_KEYS)
    if unknown:
        raise ConfigError(f"phrases/cues.yaml: unknown key(s) {', '.join(unknown)}")
    terminator = _words(_phrases(cues.get("terminators"), "cues.yaml: terminators"))
    specs = mentions.get("conditions")
    if not isinstance(specs, dict):
        raise ConfigError("phrases/mentions.yaml: expected a `conditions` mapping")
    unknown = sorted(set(specs) - set(FINDINGS))
    if unknown:
        raise ConfigError(f"phrases/mentions.yaml: unknown condition(s) {', '.join(unknown)} "
                          f"(known: {', '.join(FINDINGS)})")
    conditions = []
    for index, name in enumerate(FINDINGS):
        spec = specs.get(name)
        if not isinstance(spec, dict):
            raise ConfigError(f"phrases/mentions.yaml: condition {name!r} is missing")
        where = f"mentions.yaml: {name}"
        exclude = re.compile(_words(_phrases(spec["exclude"], where + ".exclude"))) if "exclude" in spec else None
        conditions.append(ConditionPatterns(name, index, _mention_pattern(spec, terminator, where), exclude))
    post_window = cues.get("post_window")
    if not isinstance(post_window, int) or post_window < 0:
        raise ConfigError("phrases/cues.yaml: post_window must be a non-negative integer")
    digest = hashlib.sha256(mentions_bytes + b"\0" + cues_bytes).hexdigest()[:8]
    return Grammar(
        conditions=tuple(conditions),
        terminator=re.compile(terminator),
        negation_terminator=_cue(cues, "negation_terminators", "cues.yaml"),
        finite_verb=_cue(cues, "finite_verbs", "cues.yaml"),
        pseudo=_cue(cues, "pseudo", "cues.yaml"),
        negation_pre=_cue(cues.get("negation"), "pre", "cues.yaml: negation"),
        negation_post=_cue(cues.get("negation"), "post", "cues.yaml: negation"),
        negation_adjacent=_cue(cues.get("negation"), "adjacent", "cues.yaml: negation"),
        negation_subject=_cue(cues.get("negation"), "subject", "cues.yaml: negation"),
        uncertainty_pre=_cue(cues.get("uncertainty"), "pre", "cues.yaml: uncertainty"),
        uncertainty_post=_cue(cues.get("uncertainty"), "post", "cues.yaml: uncertainty"),
        double_negation_pre=_cue(cues.get("double_negation"), "pre", "cues.yaml: double_negation"),
        double_negation_post=_cue(cues.get("double_negation"), "post", "cues.yaml: double_negation"),
        post_window=post_window,
        version=f"m{mentions['version']}.c{cues['version']}+{digest}",
    )
