"""The generation interface: ``Backend.generate(requests) -> results``.

A :class:`Request` is a rendered prompt with its sampling parameters, seed and request hash; a
:class:`Result` is the generated text with its finish reason, token counts and latency. Backends
(vLLM offline, transformers, an OpenAI-compatible server) yield results as they complete, in any
order, so the caller can write them to the cache in chunks while generation goes on. A request
that fails on its own (prompt too long, server error after retries) yields a result with
``error`` set instead of stopping the run; failed results are never cached.

Backends are imported lazily: torch, transformers and vllm load only when a backend opens.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

from .config import GenerateConfig
from .models import ModelRef


@dataclass(frozen=True)
class Sampling:
    """Backend-independent decoding parameters; ``temperature == 0`` is greedy decoding."""

    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def to_json(self) -> str:
        """Canonical JSON (sorted keys, no spaces, floats as floats): part of the request hash."""
        data = {"max_new_tokens": int(self.max_new_tokens), "temperature": float(self.temperature),
                "top_p": float(self.top_p)}
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_config(cls, cfg: GenerateConfig) -> Sampling:
        preset = cfg.preset
        return cls(max_new_tokens=int(_first_set(cfg.max_new_tokens, preset.max_new_tokens)),
                   temperature=float(_first_set(cfg.temperature, preset.temperature)),
                   top_p=float(_first_set(cfg.top_p, preset.top_p)))


def _first_set(value: float | None, default: float) -> float:
    return default if value is None else value


@dataclass(frozen=True)
class Request:
    request_hash: str
    prompt: str
    sampling: Sampling
    seed: int
    #: the task template version + conversation template (recorded with the result)
    template_version: str


@dataclass(frozen=True)
class Result:
    request_hash: str
    text: str
    #: "stop" (end-of-sequence token) or "length" (max_new_tokens reached), as vLLM reports it
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    error: str | None = None

    @classmethod
    def failed(cls, request_hash: str, error: str, latency_s: float = 0.0) -> Result:
        return cls(request_hash, "", "error", 0, 0, latency_s, error=" ".join(error.split()))


class Backend(Protocol):
    #: "vllm", "transformers" or "openai"
    name: str
    #: the revision actually loaded (hub commit hash where it can be resolved, else "unknown")
    revision: str

    def generate(self, requests: Sequence[Request]) -> Iterator[Result]:
        """Generate every request, yielding each result as soon as it is complete."""
        ...

    def close(self) -> None:
        ...


def choose_backend(cfg: GenerateConfig) -> str:
    """``auto`` is vLLM where CUDA and vllm are present, transformers otherwise."""
    if cfg.backend != "auto":
        return cfg.backend
    if importlib.util.find_spec("vllm") is None:
        return "transformers"
    import torch

    return "vllm" if torch.cuda.is_available() else "transformers"


@contextmanager
def open_backend(name: str, cfg: GenerateConfig, model: ModelRef) -> Iterator[Backend]:
    """Load the named backend for ``model``; closes it (frees the GPU, stops workers) on exit."""
    backend: Backend
    if name == "vllm":
        from .vllm_backend import VllmBackend

        backend = VllmBackend(model, cfg.vllm, seed=cfg.seed)
    elif name == "transformers":
        from .transformers_backend import TransformersBackend

        backend = TransformersBackend(model, cfg.transformers)
    elif name == "openai":
        from .openai_backend import OpenAIBackend

        backend = OpenAIBackend(model, cfg.openai)
    else:
        raise ValueError(f"unknown backend {name!r}")
    try:
        yield backend
    finally:
        backend.close()
