"""The ``train:`` section of params.yaml as frozen dataclasses, validated once.

Defaults follow RaDialog v1's ``finetune.py`` (LoRA r 8 / alpha 16 / dropout 0.05 on q_proj and
v_proj, lr 3e-4, 2 x 64 accumulation = batch 128, 100 warmup steps, eval every 400 steps, cut-off
800 tokens) with v2's supervision of the last assistant turn only.

``micro_batch_size * grad_accum`` rows make one optimizer step whatever the number of ranks (the
global batch): under a launcher each of ``W`` ranks trains on ``1 / W`` of them, in micro-batches
of ``micro_batch_size``, so the trajectory and the checkpoints do not depend on ``W``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..tasks.config import section
from ..tasks.errors import ConfigError
from ..tasks.hashing import short_id
from ..tasks.instruct.presets import ALL_TASKS
from ..tasks.io import dumps_json
from ..tasks.workdir import Workdir

#: ``base_model`` value that selects the tiny random Llama built offline into <workdir>/models.
DEMO_MODEL = "demo-tiny"
SUPERVISE = ("last", "all")
PROJECTORS = ("linear", "mlp2x_gelu")
DTYPES = ("auto", "bfloat16", "float32")
SCHEDULERS = ("linear", "cosine")

#: Settings that do not change the training trajectory: a checkpoint written under other values
#: of these still resumes (everything else must match, see :meth:`TrainConfig.resume_key`).
NON_TRAJECTORY = ("output_dir", "epochs", "max_steps", "eval_every", "eval_max_rows", "save_every",
                  "keep_checkpoints", "early_stopping_patience", "log_every", "gradient_checkpointing")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    #: module names (peft ``target_modules``), or ["all-linear"]
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass(frozen=True)
class FeatureSettings:
    #: precomputed per-dicom image features (.parquet or .npy, see trainer/features.py); null = text only
    path: str | None = None
    #: embeddings each <IMG> slot expands to (RaDialog v1: 32 BLIP query tokens)
    n_tokens: int = 32
    projector: str = "linear"


@dataclass(frozen=True)
class TrainConfig:
    base_model: str = "lmsys/vicuna-7b-v1.5"
    revision: str | None = None
    #: shards/<version> to train on; null = the assemble stage's version (assemble.version)
    dataset_version: str | None = None
    #: null = <workdir>/adapters/<dataset version>
    output_dir: str | None = None
    #: a subset of the task names; null = all tasks in the shards
    tasks: list[str] | None = None
    supervise: str = "last"
    max_length: int = 800
    lora: LoraSettings = field(default_factory=LoraSettings)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    lr: float = 3e-4
    lr_scheduler: str = "linear"
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    epochs: int = 3
    #: rows per forward pass on one rank
    micro_batch_size: int = 2
    #: micro-batches per optimizer step over all ranks (each of W ranks runs grad_accum / W of them)
    grad_accum: int = 64
    shuffle_buffer: int = 10000
    #: optimizer steps between evaluations (besides the one at every epoch end); null = epoch ends only
    eval_every: int | None = 400
    #: validation rows per evaluation (a fixed seeded sample); null = the whole validation split
    eval_max_rows: int | None = 2000
    save_every: int = 200
    keep_checkpoints: int = 2
    #: evaluations without improvement before stopping; null = never stop early
    early_stopping_patience: int | None = 3
    log_every: int = 10
    #: null = the top-level seed
    seed: int | None = None
    #: bfloat16 = bf16 mixed precision: frozen base weights in bf16 and matmuls under bf16 autocast, while
    #: the LoRA weights, optimizer state and loss stay float32; auto = bfloat16 on a GPU that has it
    dtype: str = "auto"
    #: recompute each decoder layer's activations in the backward pass (less memory, ~1/3 more compute)
    gradient_checkpointing: bool = False
    load_in_8bit: bool = False
    max_steps: int | None = None

    @property
    def rows_per_step(self) -> int:
        return self.micro_batch_size * self.grad_accum

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resume_key(self, manifest_sha256: str) -> str:
        """Identity of a training trajectory: the data and every setting that shapes the updates."""
        kept = {k: v for k, v in self.as_dict().items() if k not in NON_TRAJECTORY}
        return short_id(dumps_json(kept), manifest_sha256, length=16)


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(f"params: {message}")


def load_config(params: dict[str, Any], *, max_steps: int | None = None) -> TrainConfig:
    """Read and validate ``params["train"]``; fill the seed and ``max_steps`` (the CLI's wins)."""
    cfg = section(TrainConfig, params, "train") if params.get("train") is not None else TrainConfig()
    seed = cfg.seed if cfg.seed is not None else params.get("seed", 0)
    cfg = dataclasses.replace(cfg, seed=int(seed), max_steps=max_steps if max_steps is not None else cfg.max_steps)
    _check(cfg.supervise in SUPERVISE, f"train.supervise is {cfg.supervise!r} (expected one of {', '.join(SUPERVISE)})")
    _check(cfg.dtype in DTYPES, f"train.dtype is {cfg.dtype!r} (expected one of {', '.join(DTYPES)})")
    _check(cfg.lr_scheduler in SCHEDULERS,
           f"train.lr_scheduler is {cfg.lr_scheduler!r} (expected one of {', '.join(SCHEDULERS)})")
    _check(cfg.features.projector in PROJECTORS,
           f"train.features.projector is {cfg.features.projector!r} (expected one of {', '.join(PROJECTORS)})")
    unknown = sorted(set(cfg.tasks or ()) - set(ALL_TASKS))
    _check(not unknown, f"train.tasks has unknown task(s) {', '.join(unknown)} (known: {', '.join(ALL_TASKS)})")
    _check(cfg.tasks is None or len(cfg.tasks) > 0, "train.tasks is empty (use null for all tasks)")
    for name in ("max_length", "micro_batch_size", "grad_accum", "epochs", "save_every", "keep_checkpoints",
                 "shuffle_buffer", "log_every"):
        _check(getattr(cfg, name) >= 1, f"train.{name} must be at least 1, got {getattr(cfg, name)}")
    for name in ("eval_every", "eval_max_rows", "early_stopping_patience", "max_steps"):
        value = getattr(cfg, name)
        _check(value is None or value >= 1, f"train.{name} must be null or at least 1, got {value}")
    _check(cfg.features.n_tokens >= 1, f"train.features.n_tokens must be at least 1, got {cfg.features.n_tokens}")
    _check(cfg.lora.r >= 1 and bool(cfg.lora.target_modules), "train.lora needs r >= 1 and target_modules")
    return cfg


def dataset_version(cfg: TrainConfig, params: dict[str, Any]) -> str:
    version = cfg.dataset_version or (params.get("assemble") or {}).get("version")
    if not version:
        raise ConfigError("params: set train.dataset_version (or assemble.version): which shards/<version> to train on")
    return str(version)


def output_dir(cfg: TrainConfig, wd: Workdir, version: str) -> Path:
    return Path(cfg.output_dir).resolve() if cfg.output_dir else wd.root / "adapters" / version
