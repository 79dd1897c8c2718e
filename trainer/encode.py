"""Conversations -> token ids and loss labels, and examples -> padded batches.

A row's ``messages`` are rendered in the Vicuna v1.1 format (``Conversation.segments``) and
tokenised in one piece, so the ids are exactly those of the rendered text; a token carries a label
when its character span overlaps a supervised answer (the answer text plus its ``</s>``), all other
positions are -100. ``supervise: last`` (RaDialog v2's ``preprocess_v1`` change, and v1's
``train_on_inputs=False``) supervises only the final assistant turn; ``all`` every assistant turn.

Sequences longer than ``max_length`` are cut on the right (as both originals did); a row left with
no supervised token, or with its image slot cut, is dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch

from ..tasks.errors import ConfigError, InputError
from ..tasks.text.conversation import Conversation, Message
from .shards import Row

IGNORE = -100


class Skip(StrEnum):
    """Why a row yields no example."""

    TOO_LONG = "too_long"
    NO_FEATURES = "no_features"


@dataclass(frozen=True)
class ImageSlot:
    """The added ``<IMG>`` token and how many placeholder positions it expands to."""

    token_id: int
    n_tokens: int


@dataclass(frozen=True)
class Example:
    input_ids: list[int]
    labels: list[int]
    #: whether the sequence holds the image placeholders; their features are looked up by dicom_id
    has_image: bool = False
    dicom_id: str | None = None

    @property
    def n_labels(self) -> int:
        return sum(label != IGNORE for label in self.labels)


@dataclass(frozen=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    #: dicom ids of the rows with image placeholders, in row order
    image_dicoms: list[str]


def answer_spans(segments: Sequence[tuple[str, bool]], supervise: str) -> list[tuple[int, int]]:
    """Character ranges of the supervised answers within the rendered text."""
    spans, pos = [], 0
    for text, is_answer in segments:
        if is_answer:
            spans.append((pos, pos + len(text)))
        pos += len(text)
    return spans[-1:] if supervise == "last" else spans


class Encoder:
    def __init__(self, tokenizer, conversation: Conversation, *, max_length: int, supervise: str,
                 image: ImageSlot | None = None):
        if not tokenizer.is_fast:
            raise ConfigError("train.base_model: the tokenizer must be a fast (Rust) tokenizer (offsets are needed)")
        if tokenizer(f"a{conversation.sep2}", add_special_tokens=False)["input_ids"][-1] != tokenizer.eos_token_id:
            raise ConfigError(f"train.base_model: the tokenizer does not read {conversation.sep2!r} as its "
                              f"end-of-sequence token (Vicuna v1.1 format expected)")
        self.tokenizer = tokenizer
        self.conversation = conversation
        self.max_length = max_length
        self.supervise = supervise
        self.image = image

    def encode(self, rows: Sequence[Row]) -> list[Example | Skip]:
        """One example per row, or the reason the row is skipped."""
        segments = [self.conversation.segments(row.messages, open_turn=False) for row in rows]
        texts = ["".join(text for text, _ in segs) for segs in segments]
        encoded = self.tokenizer(texts, return_offsets_mapping=True)
        out: list[Example | Skip] = []
        columns = (rows, segments, encoded["input_ids"], encoded["offset_mapping"])
        for row, segs, ids, offsets in zip(*columns, strict=True):
            if not row.messages or row.messages[-1]["role"] != "assistant":
                raise InputError(None, "the conversation does not end with an assistant turn",
                                 record=row.sample_id, expected="messages whose final turn is the answer")
            labels = _labels(ids, offsets, answer_spans(segs, self.supervise))
            out.append(self._finish(row, ids, labels))
        return out

    def encode_prompt(self, messages: Sequence[Message]) -> list[int]:
        """Token ids of an open conversation (ending in ``ASSISTANT:``), image slot expanded."""
        ids = self.tokenizer(self.conversation.render(messages, open_turn=True))["input_ids"]
        ids, _, _ = self._expand_image(ids, [IGNORE] * len(ids), "prompt")
        return ids

    def _finish(self, row: Row, ids: list[int], labels: list[int]) -> Example | Skip:
        ids, labels, has_image = self._expand_image(ids, labels, row.sample_id)
        ids, labels = ids[:self.max_length], labels[:self.max_length]
        if not any(label != IGNORE for label in labels):
            return Skip.TOO_LONG
        if has_image and ids.count(self.image.token_id) != self.image.n_tokens:
            return Skip.TOO_LONG
        return Example(ids, labels, has_image, row.dicom_id)

    def _expand_image(self, ids: list[int], labels: list[int], record: str) -> tuple[list[int], list[int], bool]:
        if self.image is None:
            return ids, labels, False
        slots = [i for i, token in enumerate(ids) if token == self.image.token_id]
        if not slots:
            return ids, labels, False
        if len(slots) > 1:
            raise InputError(None, f"{len(slots)} image slots in one conversation", record=record,
                             expected="at most one <IMG>")
        (i,) = slots
        n = self.image.n_tokens
        return ids[:i] + [ids[i]] * n + ids[i + 1:], labels[:i] + [IGNORE] * n + labels[i + 1:], True


def _labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    bounds = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
    start, end = bounds[:, 0], bounds[:, 1]
    keep = np.zeros(len(ids), dtype=bool)
    for lo, hi in spans:
        keep |= (start < hi) & (end > lo) & (end > start)
    return [token if k else IGNORE for token, k in zip(ids, keep, strict=True)]


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad to the longest example."""
    width = max(len(ex.input_ids) for ex in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    labels = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    for i, ex in enumerate(examples):
        n = len(ex.input_ids)
        ids[i, :n] = torch.tensor(ex.input_ids)
        labels[i, :n] = torch.tensor(ex.labels)
        mask[i, :n] = 1
    return Batch(ids, mask, labels, [ex.dicom_id for ex in examples if ex.has_image])
