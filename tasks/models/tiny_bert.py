"""Random-weight CheXbert stand-ins for tests and benchmarks (no hub, no download).

:func:`build_chexbert` learns a WordPiece vocabulary from the given texts, wraps it as a
``BertTokenizerFast`` ([PAD] [UNK] [CLS] [SEP] [MASK], lower-casing like bert-base-uncased), makes a
random ``BertConfig`` model with CheXbert's 14 heads, and saves them in the real layouts: an encoder
folder (``config.json`` + tokenizer files, what ``label.chexbert.encoder`` points at) and
``chexbert.pth`` (``{"model_state_dict": ...}`` with ``module.`` prefixes). Same texts and seed,
same files. :data:`TINY` is small enough for unit tests; :data:`BERT_BASE` has bert-base-uncased's
shape (vocabulary padded to 30,522 entries) for speed measurements on a GPU without internet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import BertConfig, BertTokenizerFast

from ..io import atomic_path
from ..labeling.chexbert import MAX_TOKENS, ChexbertModel
from .portable import drop_version_stamps

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class BertShape:
    vocab_size: int        # WordPiece vocabulary learnt from the texts (at most this many entries)
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    initializer_range: float = 0.02  # std of the random weights
    pad_vocab_to: int | None = None  # fill the vocabulary with [unusedN] entries up to this size


#: Large random weights, so that the [CLS] state - and so the predicted classes - vary between texts.
TINY = BertShape(vocab_size=600, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
                 initializer_range=0.5)
BERT_BASE = BertShape(vocab_size=8000, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
                      pad_vocab_to=30522)


@dataclass(frozen=True)
class TinyChexbert:
    encoder_dir: Path  # config.json + tokenizer files
    checkpoint: Path   # chexbert.pth


def wordpiece_vocab(words: Counter[str], vocab_size: int) -> dict[str, int]:
    """Special tokens, every character (word-initial and ``##`` continuation), then the most frequent
    words (ties by spelling) up to ``vocab_size`` entries: every word seen can be tokenised.

    Deterministic on purpose: ``tokenizers``' WordPieceTrainer breaks ties between equally frequent
    merges in hash order, so two trainings on the same texts give different vocabularies.
    """
    chars = sorted({c for w in words for c in w})
    entries = list(SPECIAL_TOKENS) + chars + [f"##{c}" for c in chars]
    entries += [w for w, _ in sorted(words.items(), key=lambda kv: (-kv[1], kv[0])) if len(w) > 1]
    return {token: i for i, token in enumerate(dict.fromkeys(entries[:max(vocab_size, 2 * len(chars) + 5)]))}


def train_tokenizer(texts: Iterable[str], vocab_size: int, pad_vocab_to: int | None = None) -> BertTokenizerFast:
    """A lower-casing WordPiece tokenizer with a vocabulary learnt from ``texts`` (special tokens get
    ids 0-4, as in bert-base-uncased [PAD] is 0)."""
    normalizer, pre_tokenizer = normalizers.BertNormalizer(lowercase=True), pre_tokenizers.BertPreTokenizer()
    words = Counter(w for text in texts for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    vocab = wordpiece_vocab(words, vocab_size)
    for i in range(len(vocab), pad_vocab_to or 0):
        vocab[f"[unused{i}]"] = i
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer, tok.pre_tokenizer = normalizer, pre_tokenizer
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece()
    return BertTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", sep_token="[SEP]", pad_token="[PAD]",
                             cls_token="[CLS]", mask_token="[MASK]", do_lower_case=True,
                             model_max_length=MAX_TOKENS)


def build_chexbert(out_dir: str | Path, texts: Iterable[str], shape: BertShape = TINY, *,
                   seed: int = 0) -> TinyChexbert:
    """Write a random-weight CheXbert (encoder folder + checkpoint) under ``out_dir``."""
    out = Path(out_dir)
    tokenizer = train_tokenizer(texts, shape.vocab_size, shape.pad_vocab_to)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=shape.hidden_size,
                        num_hidden_layers=shape.num_layers, num_attention_heads=shape.num_heads,
                        intermediate_size=shape.intermediate_size, max_position_embeddings=MAX_TOKENS,
                        initializer_range=shape.initializer_range, pad_token_id=tokenizer.pad_token_id)
    encoder_dir = out / "encoder"
    with atomic_path(encoder_dir, directory=True) as tmp:
        tokenizer.save_pretrained(tmp)
        config.save_pretrained(tmp)
        drop_version_stamps(tmp)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ChexbertModel(config)
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    checkpoint = out / "chexbert.pth"
    with atomic_path(checkpoint) as tmp:
        torch.save({"model_state_dict": state}, tmp)
    return TinyChexbert(encoder_dir, checkpoint)
