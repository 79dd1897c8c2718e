"""The ``generate:`` section of params.yaml and the model presets.

A preset names a generator and its decoding defaults; ``model``, ``max_new_tokens``,
``temperature`` and ``top_p`` override them one by one. ``temperature: 0`` means greedy decoding.

Named by what is known about them (every preset decodes greedily, 256 new tokens):

- ``vicuna-13b-v1.3``: what the original code ran (lmsys/vicuna-13b-v1.3 in RaDialog's
  ``data/create_data.py``; transformers ``generate`` with the model's generation config, i.e.
  greedy, ``max_new_tokens=256``).
- ``vicuna-7b-v1.3``: lmsys/vicuna-7b-v1.3, the 7B Vicuna of the original v1 trainer
  (``finetune.py``'s ``vicuna_v7``). The papers say the pseudo labels came from the non-fine-tuned
  LLM, "vicuna-7b", without a version.
- ``vicuna-7b-v1.5``: lmsys/vicuna-7b-v1.5, a 7B Vicuna as the papers name one; the version is
  this project's choice (it is also the bundled trainer's default base model), not something the
  papers or the original code state.
- ``demo-tiny``: a tiny random-weight Llama built on first use into ``<workdir>/models/demo-tiny``
  from the ingested report texts. It exercises the real code paths offline; its text is noise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import section
from ..errors import ConfigError

BACKENDS = ("auto", "vllm", "transformers", "openai")


@dataclass(frozen=True)
class Preset:
    model: str
    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    #: False when the generator's text is meaningless (random weights): the summary says so
    meaningful: bool = True


DEMO_TINY = "demo-tiny"

PRESETS: dict[str, Preset] = {
    "vicuna-13b-v1.3": Preset("lmsys/vicuna-13b-v1.3"),
    "vicuna-7b-v1.3": Preset("lmsys/vicuna-7b-v1.3"),
    "vicuna-7b-v1.5": Preset("lmsys/vicuna-7b-v1.5"),
    DEMO_TINY: Preset(DEMO_TINY, max_new_tokens=32, meaningful=False),
}


@dataclass(frozen=True)
class VllmSettings:
    tensor_parallel_size: int = 1
    gpu_memory_utilization: float = 0.9
    #: null = the model's own context length (4096 for vicuna-7b-v1.5, 2048 for vicuna-13b-v1.3)
    max_model_len: int | None = None
    dtype: str = "auto"
    enable_prefix_caching: bool = True
    enforce_eager: bool = False
    max_num_seqs: int = 256


@dataclass(frozen=True)
class TransformersSettings:
    batch_size: int = 8
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class OpenAISettings:
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int = 16
    timeout_s: float = 120.0
    max_retries: int = 5


@dataclass(frozen=True)
class GenerateConfig:
    model_preset: str = DEMO_TINY
    model: str | None = None
    revision: str | None = None
    backend: str = "auto"
    seed: int = 0
    max_new_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    chunk_size: int = 256
    vllm: VllmSettings = field(default_factory=VllmSettings)
    transformers: TransformersSettings = field(default_factory=TransformersSettings)
    openai: OpenAISettings = field(default_factory=OpenAISettings)

    @property
    def preset(self) -> Preset:
        return PRESETS[self.model_preset]

    @property
    def model_id(self) -> str:
        """The configured generator: hub id, local folder, or ``demo-tiny``."""
        return self.model or self.preset.model


def load_config(params: dict[str, Any]) -> GenerateConfig:
    cfg = section(GenerateConfig, params, "generate")
    if cfg.model_preset not in PRESETS:
        raise ConfigError(f"params: generate.model_preset {cfg.model_preset!r} is unknown "
                          f"(known: {', '.join(PRESETS)})")
    if cfg.backend not in BACKENDS:
        raise ConfigError(f"params: generate.backend {cfg.backend!r} is unknown (known: {', '.join(BACKENDS)})")
    checks = [
        (cfg.chunk_size >= 1, "generate.chunk_size must be at least 1"),
        (cfg.max_new_tokens is None or cfg.max_new_tokens >= 1, "generate.max_new_tokens must be at least 1"),
        (cfg.temperature is None or cfg.temperature >= 0, "generate.temperature must be >= 0 (0 = greedy)"),
        (cfg.top_p is None or 0 < cfg.top_p <= 1, "generate.top_p must be in (0, 1]"),
        (cfg.transformers.batch_size >= 1, "generate.transformers.batch_size must be at least 1"),
        (cfg.openai.concurrency >= 1, "generate.openai.concurrency must be at least 1"),
        (cfg.openai.max_retries >= 0, "generate.openai.max_retries must be >= 0"),
        (cfg.openai.timeout_s > 0, "generate.openai.timeout_s must be > 0"),
        (0 < cfg.vllm.gpu_memory_utilization <= 1, "generate.vllm.gpu_memory_utilization must be in (0, 1]"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(f"params: {message}")
    return cfg
