"""CheXbert (stanfordmlgroup/CheXbert): a BERT encoder + 14 linear heads on the [CLS] state.

Architecture and checkpoint layout as in the original ``models/bert_labeler.py``: ``bert.*`` (a
``BertModel`` with pooler) and ``linear_heads.{0..13}.*`` (13 heads of 4 classes - blank, positive,
negative, uncertain - and a 2-class No Finding head, in ``conditions.CONDITIONS`` order), saved as
``{"model_state_dict": ...}`` with DataParallel's ``module.`` prefix. Inference follows the
original ``label.py``: whitespace collapsed, [CLS] text [SEP] cut to 512 tokens (the first 511 plus
[SEP]), argmax per head, class -> value 0 -> blank, 1 -> 1, 2 -> 0, 3 -> -1. Batches are sorted by
token length so that padding is minimal; on CUDA the model runs in bf16 (fp16 without bf16).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import BertConfig, BertModel, BertTokenizerFast

from ..errors import InputError
from ..fingerprints import file_digest
from ..hashing import short_id
from .conditions import CHEXBERT_CLASS_TO_VALUE, CONDITIONS

log = logging.getLogger("radialog_instruct.label")

#: Bump when tokenisation or decoding here changes.
CHEXBERT_CODE_VERSION = "1"
MAX_TOKENS = 512
N_FINDING_CLASSES, N_NO_FINDING_CLASSES = 4, 2
#: Buffers some transformers versions save in or expect from a state dict; they are not weights.
_BUFFERS = ("bert.embeddings.position_ids", "bert.embeddings.token_type_ids")
_CLASS_VALUE = np.array([np.nan if v is None else v for v in CHEXBERT_CLASS_TO_VALUE.values()], np.float32)
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class ChexbertModel(nn.Module):
    """``bert`` + ``linear_heads``; ``forward`` returns the argmax class per head, (batch, 14)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.bert = BertModel(config)
        hidden = config.hidden_size
        self.linear_heads = nn.ModuleList(
            [nn.Linear(hidden, N_FINDING_CLASSES) for _ in CONDITIONS[:-1]] + [nn.Linear(hidden, N_NO_FINDING_CLASSES)])

    def logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[torch.Tensor]:
        cls = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]
        return [head(cls) for head in self.linear_heads]

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return torch.stack([h.argmax(dim=-1) for h in self.logits(input_ids, attention_mask)], dim=1)


def decode(classes: np.ndarray) -> np.ndarray:
    """Head classes (n, 14) -> label values (n, 14) float32 (No Finding: 0 blank, 1 positive)."""
    return _CLASS_VALUE[np.asarray(classes, dtype=np.int64)]


def clean_text(text: str) -> str:
    """The original's preprocessing: strip, newlines to spaces, runs of whitespace to one space."""
    return " ".join(text.split())


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The ``model_state_dict`` of a CheXbert checkpoint, without the ``module.`` prefix."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError(path, "checkpoint file not found", expected="a CheXbert chexbert.pth") from None
    except Exception as err:  # noqa: BLE001 - torch raises many types for a bad file; one line names it
        raise InputError(path, f"not a readable torch checkpoint ({type(err).__name__}: "
                               f"{' '.join(str(err).split())[:200]})", expected="a CheXbert chexbert.pth") from None
    state = checkpoint.get("model_state_dict") if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise InputError(path, "no model_state_dict in the checkpoint",
                         expected='a dict {"model_state_dict": ...} as saved by CheXbert')
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: ChexbertModel, path: Path) -> None:
    """Load a checkpoint into ``model``; any missing, unexpected or mis-shaped weight is an error."""
    state = load_state_dict(path)
    expected = model.state_dict()
    wrong = [f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}" for k, v in state.items()
             if k in expected and v.shape != expected[k].shape]
    missing = sorted(set(expected) - set(state) - set(_BUFFERS))
    unexpected = sorted(set(state) - set(expected) - set(_BUFFERS))
    problems = ([f"mis-shaped {', '.join(wrong[:3])}"] if wrong else []) + \
               ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
               ([f"unexpected {', '.join(unexpected[:3])}"] if unexpected else [])
    if problems:
        raise InputError(path, "weights do not fit the encoder config: " + "; ".join(problems),
                         expected="a CheXbert checkpoint for this encoder (label.chexbert.encoder)")
    model.load_state_dict({k: v for k, v in state.items() if k in expected}, strict=False)


def load_encoder(encoder: str) -> tuple[BertConfig, BertTokenizerFast]:
    """BERT config and tokenizer from a local folder or a hub id (e.g. bert-base-uncased)."""
    try:
        return BertConfig.from_pretrained(encoder), BertTokenizerFast.from_pretrained(encoder)
    except (OSError, ValueError) as err:
        raise InputError(encoder, f"cannot load the encoder config/tokenizer ({' '.join(str(err).split())[:300]})",
                         expected="a hub id such as bert-base-uncased (cached or reachable) or a folder "
                                  "with config.json and tokenizer files") from None


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    if dtype != "auto":
        return _DTYPES[dtype]
    if device.type != "cuda":
        return torch.float32
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


class ChexbertLabeler:
    """CheXbert inference. The tokenizer loads at once (it is part of the version), the weights on
    first use, so a fully cached run never loads them."""

    name = "chexbert"

    def __init__(self, checkpoint: str | Path, encoder: str, *, batch_size: int = 64, device: str = "auto",
                 dtype: str = "auto"):
        self.checkpoint = Path(checkpoint)
        if not self.checkpoint.is_file():
            raise InputError(self.checkpoint, "checkpoint file not found", expected="a CheXbert chexbert.pth")
        self.config, self.tokenizer = load_encoder(encoder)
        self.batch_size = batch_size
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        vocab = short_id(*sorted(self.tokenizer.get_vocab().items()), length=8)
        self.version = (f"{CHEXBERT_CODE_VERSION}-{file_digest(self.checkpoint)[:12]}-{vocab}-"
                        f"{str(self.dtype).removeprefix('torch.')}")

    @cached_property
    def model(self) -> ChexbertModel:
        model = ChexbertModel(self.config)
        load_weights(model, self.checkpoint)
        log.info("CheXbert %s loaded on %s (%s)", self.checkpoint, self.device, self.dtype)
        return model.to(device=self.device, dtype=self.dtype).eval()

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids ([CLS] ... [SEP], at most 512) of each text."""
        return self.tokenizer([clean_text(t) for t in texts], truncation=True, max_length=MAX_TOKENS,
                              return_attention_mask=False, return_token_type_ids=False)["input_ids"]

    def label(self, texts: Sequence[str]) -> np.ndarray:
        ids = self.encode(texts)
        lengths = np.fromiter((len(x) for x in ids), np.int64, len(ids))
        order = np.argsort(-lengths, kind="stable")  # longest first: a too-large batch fails at once
        classes = np.zeros((len(ids), len(CONDITIONS)), dtype=np.int64)
        pad = self.tokenizer.pad_token_id or 0
        with torch.inference_mode():
            for lo in range(0, len(order), self.batch_size):
                batch = order[lo:lo + self.batch_size]
                width = int(lengths[batch].max())
                input_ids = np.full((len(batch), width), pad, dtype=np.int64)
                for row, i in enumerate(batch):
                    input_ids[row, :lengths[i]] = ids[i]
                mask = np.arange(width)[None, :] < lengths[batch][:, None]
                out = self.model(torch.from_numpy(input_ids).to(self.device, non_blocking=True),
                                 torch.from_numpy(mask.astype(np.int64)).to(self.device, non_blocking=True))
                classes[batch] = out.cpu().numpy()
        return decode(classes)
