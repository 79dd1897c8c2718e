"""transformers backend (CPU or GPU): ``generate`` over left-padded batches of similar length.

- Requests are tokenized once and sorted by length, so a batch pads little; the weights load
  straight onto ``device`` (``auto``: CUDA when available), in float32 on a CPU and in the
  checkpoint's dtype on a GPU unless ``dtype`` says otherwise.
- The model's own ``generation_config`` sampling defaults (vicuna-7b-v1.5 ships temperature 0.9,
  top_p 0.6) are replaced by a neutral config: only the request's :class:`Sampling` applies,
  as with the vLLM and OpenAI backends.
- Greedy decoding is ``do_sample=False``. Sampling draws each row's token with its own
  ``torch.Generator`` seeded with the request seed (:class:`SeededSampler`), so a request's
  text does not depend on which requests share its batch (vLLM's per-request seed semantics).
- finish_reason is "stop" when an end-of-sequence token ends the text (counted as a completion
  token, as vLLM counts it) and "length" otherwise; prompt_tokens include the BOS token.
- A text cut inside a multi-byte character ends in U+FFFD after decoding; vLLM's detokenizer
  holds such incomplete bytes back, so they are dropped here too and both backends agree.

Imported only when the backend opens (it imports torch and transformers).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LogitsProcessor, LogitsProcessorList

from .config import TransformersSettings
from .engine import Request, Result, Sampling
from .models import ModelRef, resolved_revision


class SeededSampler(LogitsProcessor):
    """A logits processor that samples one token per row from temperature/top-p probabilities with
    a per-row generator and returns a one-hot score row (greedy search then picks that token)."""

    def __init__(self, seeds: Sequence[int], sampling: Sampling):
        self.seeds = list(seeds)
        self.sampling = sampling
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if not self.generators:
            self.generators = [torch.Generator(device=scores.device).manual_seed(int(s)) for s in self.seeds]
        probs = torch.softmax(scores.float() / self.sampling.temperature, dim=-1)
        if self.sampling.top_p < 1.0:
            sorted_probs, order = probs.sort(dim=-1, descending=True)
            sorted_probs[sorted_probs.cumsum(-1) - sorted_probs > self.sampling.top_p] = 0.0
            probs = torch.zeros_like(probs).scatter_(-1, order, sorted_probs)
        out = torch.full_like(scores, float("-inf"))
        for row, generator in enumerate(self.generators):
            out[row, torch.multinomial(probs[row], 1, generator=generator)] = 0.0
        return out


class TransformersBackend:
    name = "transformers"

    def __init__(self, model: ModelRef, settings: TransformersSettings):
        self.device = settings.device if settings.device != "auto" else (
            "cuda" if torch.cuda.is_available() else "cpu")
        if settings.dtype != "auto":
            dtype: Any = getattr(torch, settings.dtype)
        else:
            dtype = torch.float32 if self.device == "cpu" else "auto"
        self.tokenizer = AutoTokenizer.from_pretrained(model.source, revision=model.revision)
        self.tokenizer.padding_side = "left"
        self.model = AutoModelForCausalLM.from_pretrained(model.source, revision=model.revision, dtype=dtype,
                                                          device_map=self.device).eval()
        own = self.model.generation_config
        eos = own.eos_token_id if own.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])
        self.pad_id = next(i for i in (self.tokenizer.pad_token_id, self.tokenizer.unk_token_id,
                                       self.tokenizer.eos_token_id) if i is not None)
        self.model.generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id, eos_token_id=sorted(self.eos_ids), pad_token_id=self.pad_id)
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None)
        self.batch_size = settings.batch_size
        self.revision = resolved_revision(model)

    def generate(self, requests: Sequence[Request]) -> Iterator[Result]:
        ids = self.tokenizer([r.prompt for r in requests])["input_ids"] if requests else []
        order = sorted(range(len(requests)), key=lambda i: (requests[i].sampling.to_json(), len(ids[i])))
        batch: list[int] = []
        for i in order:
            if self.max_positions and len(ids[i]) >= self.max_positions:
                yield Result.failed(requests[i].request_hash, f"the prompt has {len(ids[i])} tokens; the model's "
                                    f"context is {self.max_positions}")
                continue
            if batch and (len(batch) == self.batch_size or requests[batch[0]].sampling != requests[i].sampling):
                yield from self._batch([requests[j] for j in batch], [ids[j] for j in batch])
                batch = []
            batch.append(i)
        if batch:
            yield from self._batch([requests[j] for j in batch], [ids[j] for j in batch])

    def _batch(self, requests: list[Request], ids: list[list[int]]) -> list[Result]:
        started = time.perf_counter()
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):
            input_ids[row, width - len(x):] = torch.tensor(x, dtype=torch.long)
            mask[row, width - len(x):] = 1
        sampling = requests[0].sampling
        processors = [] if sampling.greedy else [SeededSampler([r.seed for r in requests], sampling)]
        with torch.inference_mode():
            out = self.model.generate(input_ids=input_ids.to(self.device), attention_mask=mask.to(self.device),
                                      max_new_tokens=sampling.max_new_tokens, do_sample=False,
                                      logits_processor=LogitsProcessorList(processors))
        latency = time.perf_counter() - started
        results = []
        for row, request in enumerate(requests):
            new = out[row, width:].tolist()
            stop = next((j for j, t in enumerate(new) if t in self.eos_ids), None)
            completion = new if stop is None else new[:stop + 1]
            text = self.tokenizer.decode(completion, skip_special_tokens=True).rstrip("\ufffd")
            results.append(Result(request.request_hash, text, "length" if stop is None else "stop", len(ids[row]),
                                  len(completion), latency))
        return results

    def close(self) -> None:
        del self.model
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
