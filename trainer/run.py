"""The train stage: shards/<version> -> <output_dir>/adapter (+ checkpoints, reports/train-summary.json).

:func:`run_train` is what the CLI (``radialog-instruct train``) and the flow call (through
:mod:`.stage`, which also tells the stage stamps what the stage reads and writes), and what every
rank runs under a launcher (trainer/launch.py).
"""

from __future__ import annotations

import dataclasses
import logging
from itertools import islice
from pathlib import Path
from typing import Any

import torch

from ..tasks import PIPELINE_VERSION
from ..tasks.errors import InputError
from ..tasks.hashing import short_id
from ..tasks.io import dumps_json, write_json
from ..tasks.text.conversation import Conversation, params_conversation
from ..tasks.workdir import Workdir
from . import distributed
from .config import TrainConfig, dataset_version, load_config, output_dir
from .encode import Encoder, ImageSlot
from .features import build_projector, open_features
from .loop import Data, Trainer
from .model import BaseModel, GroundedLM, add_image_token, add_lora, load_lm, load_tokenizer, pick_runtime, resolve_base
from .shards import ShardSet, count_rows, open_shards, stream_rows

log = logging.getLogger(__name__)

#: Conversations the demo model's tokenizer is trained on.
DEMO_TOKENIZER_ROWS = 2000


def _demo_texts(shards: ShardSet, seed: int, conversation: Conversation) -> list[str]:
    rows = stream_rows(shards.files("train"), "train", None, seed=seed, purpose="demo-tokenizer", epoch=0,
                       buffer_size=DEMO_TOKENIZER_ROWS)
    return [conversation.render(row.messages, open_turn=False) for row in islice(rows, DEMO_TOKENIZER_ROWS)]


def _verify(shards: ShardSet) -> None:
    for split in ("train", "validate"):
        shards.verify(split)


def _data(cfg: TrainConfig, shards: ShardSet) -> Data:
    train, validate = shards.files("train"), shards.files("validate")
    data = Data(train, validate, cfg.tasks, count_rows(train, "train", cfg.tasks),
                count_rows(validate, "validate", cfg.tasks))
    if not data.train_rows:
        raise InputError(shards.manifest, "no train rows" + (f" for tasks {', '.join(cfg.tasks)}" if cfg.tasks else ""),
                         expected="a dataset version with a train split")
    return data


def _metadata(cfg: TrainConfig, base: BaseModel, shards: ShardSet, conversation: Conversation,
              image: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "dataset_version": shards.version, "manifest_sha256": shards.manifest_sha256,
        "dataset_config_hash": shards.config_hash, "train_config_hash": short_id(dumps_json(cfg.as_dict())),
        "base_model": base.name, "base_model_path": base.path, "base_revision": base.revision,
        "conversation": dataclasses.asdict(conversation),  # the format the adapter was trained on
        "supervise": cfg.supervise, "max_length": cfg.max_length, "tasks": cfg.tasks, "image": image,
        "lora": cfg.as_dict()["lora"], "pipeline_version": PIPELINE_VERSION,
    }


def run_train(params: dict[str, Any], wd: Workdir, *, max_steps: int | None = None, resume: bool = True,
              ranks: distributed.Ranks | None = None) -> dict:
    """Fine-tune the configured base model with LoRA on a dataset version; returns the run summary.

    ``max_steps`` caps optimizer steps (smoke runs); ``resume=False`` discards existing checkpoints;
    ``ranks``: those the launcher started, when already known (default: :func:`.distributed.start`).
    """
    cfg = load_config(params, max_steps=max_steps)
    version = dataset_version(cfg, params)
    shards = open_shards(wd.shards(version))
    ranks = ranks or distributed.start()
    ranks.on_main(lambda: _verify(shards))  # read once, not once per rank
    data = _data(cfg, shards)
    out_dir = output_dir(cfg, wd, version)
    conversation = params_conversation(params)  # an imported original's format for faithful shards

    def base_model() -> BaseModel:
        return resolve_base(cfg.base_model, cfg.revision, wd, lambda: _demo_texts(shards, cfg.seed, conversation),
                            cfg.seed)

    ranks.on_main(base_model)  # rank 0 builds the demo model; the others then find it
    base = base_model()
    runtime = pick_runtime(cfg.dtype, cfg.load_in_8bit, ranks.device)
    log.info("world size %d (backend %s, device %s, %s): each step's %d rows are dealt out to the ranks",
             ranks.world, ranks.backend, runtime.device, str(runtime.dtype).removeprefix("torch."), cfg.rows_per_step)
    torch.manual_seed(cfg.seed)

    tokenizer = load_tokenizer(base.path, base.revision)
    lm = add_lora(load_lm(base, runtime, load_in_8bit=cfg.load_in_8bit), cfg.lora, base.revision)
    if cfg.gradient_checkpointing:  # non-reentrant: no inputs that require grad needed under frozen embeddings
        lm.config.use_cache = False
        lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    provider, projector, slot, image = None, None, None, None
    if cfg.features.path:
        provider = open_features(cfg.features.path, cfg.features.n_tokens)
        slot = ImageSlot(add_image_token(tokenizer, conversation.image_token), provider.n_tokens)
        projector = build_projector(cfg.features.projector, provider.dim, lm.get_input_embeddings().embedding_dim)
        projector = projector.to(runtime.device)
        image = {"projector": cfg.features.projector, "dim": provider.dim, "n_tokens": provider.n_tokens,
                 "features_path": str(Path(cfg.features.path).resolve())}
    model = GroundedLM(lm, projector, slot.token_id if slot else None)
    encoder = Encoder(tokenizer, conversation, max_length=cfg.max_length, supervise=cfg.supervise, image=slot)

    trainer = Trainer(cfg, model, tokenizer, encoder, provider, data, runtime, out_dir,
                      _metadata(cfg, base, shards, conversation, image), cfg.resume_key(shards.manifest_sha256), ranks)
    resumed = False
    if resume:
        resumed = trainer.resume()
    else:
        ranks.on_main(trainer.discard_checkpoints)
    progress = trainer.run()

    summary = {
        "dataset_version": shards.version, "manifest_sha256": shards.manifest_sha256,
        "adapter": str(trainer.adapter_dir), "base_model": base.name, "device": str(runtime.device),
        "dtype": str(runtime.dtype).removeprefix("torch."), "world_size": ranks.world,
        "image_features": image is not None,
        "resumed": resumed, "steps": progress.step, "epochs_completed": progress.epoch,
        "stop_reason": progress.stop_reason, "supervised_tokens": progress.tokens,
        "train_rows": data.train_rows, "validate_rows": data.validate_rows, "skipped_rows": progress.skipped,
        "train_loss_first": progress.losses[0] if progress.losses else None,
        "train_loss_last": progress.losses[-1] if progress.losses else None,
        "train_loss_per_step": progress.losses, "evals": progress.evals,
        "best_eval_loss": progress.best_eval, "best_step": progress.best_step,
    }
    if ranks.is_main:
        write_json(summary, wd.report("train-summary.json"))
    return summary
