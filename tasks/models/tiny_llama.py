"""A tiny random-weight Llama with a byte-level BPE tokenizer trained on given texts.

It stands in for Vicuna wherever no real weights can be loaded (tests, the demo): the real
transformers / vLLM / PEFT code paths run on it unchanged. Its outputs are random text. The
build is seeded and offline, and the folder's bytes do not depend on the installed transformers
version (:mod:`.portable`); it loads with ``AutoModelForCausalLM.from_pretrained`` /
``AutoTokenizer.from_pretrained`` like any Hugging Face checkpoint.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from ..io import atomic_path
from .portable import drop_version_stamps

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]


def build_tiny_llama(out_dir: str | Path, texts: Iterable[str], *, seed: int = 0, vocab_size: int = 1024,
                     hidden_size: int = 64, layers: int = 2, heads: int = 2, max_positions: int = 2048) -> Path:
    """Train the tokenizer on ``texts``, initialise a Llama with random weights, save both.

    ``hidden_size / heads`` (the head dimension) must be at least 32 for vLLM's CPU attention.
    """
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                       special_tokens=[("<s>", bos)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                        unk_token="<unk>", pad_token="<pad>", padding_side="left",
                                        model_max_length=max_positions)
    config = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
        num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
        head_dim=hidden_size // heads, max_position_embeddings=max_positions,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(torch.float32)
    model.generation_config = GenerationConfig(bos_token_id=tokenizer.bos_token_id,
                                               eos_token_id=tokenizer.eos_token_id,
                                               pad_token_id=tokenizer.pad_token_id)
    with atomic_path(out_dir, directory=True) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        drop_version_stamps(tmp)
    return out_dir
