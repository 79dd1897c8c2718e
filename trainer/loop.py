"""The training loop: streamed steps, token-weighted loss, evaluation, early stopping, checkpoints.

A plain PyTorch loop rather than ``transformers.Trainer``: the data is a seeded stream whose
position (epoch, rows consumed) must be checkpointed and replayed exactly; the image hook feeds
``inputs_embeds`` built from looked-up features; and the loss of one optimizer step is the mean over
*all* supervised tokens of its ``grad_accum`` micro-batches (each micro-batch's summed loss is
divided by the step's token count, so long and short answers weigh per token, as in one big batch).
Those three are each a few lines here and would each be a subclass override there.

One optimizer step consumes ``micro_batch_size * grad_accum`` rows of the stream (fewer at an
epoch's end); the rows are tokenised together and cut into micro-batches of similar length.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from . import checkpoint
from .checkpoint import Progress
from .config import TrainConfig
from .encode import IGNORE, Encoder, Example, Skip, collate
from .features import FeatureProvider
from .model import GroundedLM, Runtime, save_adapter
from .shards import Row, stream_rows

log = logging.getLogger(__name__)

#: Validation rows are tokenised this many at a time.
EVAL_CHUNK = 64


@dataclass(frozen=True)
class Data:
    train: list[Path]
    validate: list[Path]
    tasks: list[str] | None
    train_rows: int
    validate_rows: int


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Consecutive lists of ``n`` items (the last one shorter); itertools.batched needs Python 3.12."""
    it = iter(items)
    while chunk := list(islice(it, n)):
        yield chunk


def lr_schedule(kind: str, warmup: int, total: int) -> Callable[[int], float]:
    """Linear warm-up to the peak, then linear or cosine decay to zero at ``total`` steps."""
    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        done = min(1.0, (step - warmup) / max(1, total - warmup))
        return 1.0 - done if kind == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))
    return factor


def total_steps(cfg: TrainConfig, train_rows: int) -> int:
    total = cfg.epochs * math.ceil(train_rows / cfg.rows_per_step)
    return min(total, cfg.max_steps) if cfg.max_steps else total


def token_loss_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Summed next-token cross-entropy over the supervised positions."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                           ignore_index=IGNORE, reduction="sum")


class Trainer:
    def __init__(self, cfg: TrainConfig, model: GroundedLM, tokenizer, encoder: Encoder,
                 provider: FeatureProvider | None, data: Data, runtime: Runtime, out_dir: Path,
                 metadata: dict[str, Any], resume_key: str):
        self.cfg, self.model, self.tokenizer, self.encoder = cfg, model, tokenizer, encoder
        self.provider, self.data, self.runtime, self.metadata = provider, data, runtime, metadata
        self.adapter_dir = out_dir / "adapter"
        self.checkpoint_dir = out_dir / "checkpoints"
        trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(cfg.lr_scheduler, cfg.warmup_steps, total_steps(cfg, data.train_rows)))
        self.progress = Progress(resume_key)
        self._saved_step: int | None = None

    # --- state -----------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the newest checkpoint, if any; True when training continues from one."""
        found = checkpoint.checkpoints(self.checkpoint_dir)
        if not found:
            return False
        progress, state = checkpoint.load(found[-1], self.progress.resume_key)
        self.model.load_trainable_state(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        checkpoint.restore_rng(state)
        if progress.stop_reason != "early_stopping":
            progress.stop_reason = None  # more epochs or steps may have been allowed since
        self.progress, self._saved_step = progress, progress.step
        log.info("resuming from %s (epoch %d, %d rows into it)", found[-1].name, progress.epoch, progress.rows_in_epoch)
        return True

    def discard_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    def save_checkpoint(self) -> None:
        if self._saved_step == self.progress.step:
            return
        checkpoint.save(self.checkpoint_dir, self.progress, self.model.trainable_state(), self.optimizer,
                        self.scheduler, self.cfg.keep_checkpoints)
        self._saved_step = self.progress.step

    def save_adapter(self, eval_loss: float | None) -> None:
        p = self.progress
        save_adapter(self.model, self.tokenizer, self.adapter_dir,
                     {**self.metadata, "step": p.step, "epoch": p.epoch, "eval_loss": eval_loss})

    # --- steps -----------------------------------------------------------------------------------

    def usable(self, rows: Sequence[Row], *, count: bool) -> list[Example]:
        """Encode ``rows`` and drop the ones that cannot be trained on (counted with ``count``)."""
        kept = []
        for ex in self.encoder.encode(rows):
            if isinstance(ex, Example) and ex.has_image and not self.provider.has(ex.dicom_id):
                ex = Skip.NO_FEATURES
            if isinstance(ex, Example):
                kept.append(ex)
            elif count:
                self.progress.skipped[ex.value] = self.progress.skipped.get(ex.value, 0) + 1
        return kept

    def micro_batches(self, examples: list[Example], size: int) -> Iterator[tuple[torch.Tensor, ...]]:
        """Padded batches of ``size`` examples of similar length, on the device."""
        ordered = sorted(examples, key=lambda ex: len(ex.input_ids))
        for group in batched(ordered, size):
            batch = collate(group, self.tokenizer.pad_token_id)
            features = self.provider.features(batch.image_dicoms) if batch.image_dicoms else None
            device = self.runtime.device
            yield batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device), features

    def loss_sum(self, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor,
                 features: torch.Tensor | None) -> torch.Tensor:
        with self.runtime.autocast():
            logits = self.model(ids, mask, features)
        return token_loss_sum(logits, labels)

    def train_step(self, rows: Sequence[Row]) -> bool:
        """One optimizer step over ``rows``; False when none of them had a supervised token."""
        p = self.progress
        p.rows_in_epoch += len(rows)
        examples = self.usable(rows, count=True)
        n_tokens = sum(ex.n_labels for ex in examples)
        if not n_tokens:
            return False
        total = 0.0
        for ids, mask, labels, features in self.micro_batches(examples, self.cfg.micro_batch_size):
            loss = self.loss_sum(ids, mask, labels, features) / n_tokens
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_([q for q in self.model.parameters() if q.requires_grad], self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        p.tokens += n_tokens
        p.losses.append(total)
        if p.step % self.cfg.log_every == 0:
            log.info("step %d  loss %.4f  lr %.2e", p.step, total, self.scheduler.get_last_lr()[0])
        return True

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-weighted mean loss over the (seeded, capped) validation rows; None without any."""
        cfg = self.cfg
        rows = stream_rows(self.data.validate, "validate", self.data.tasks, seed=cfg.seed, purpose="eval", epoch=0,
                           buffer_size=cfg.shuffle_buffer)
        self.model.eval()
        loss, tokens = 0.0, 0
        for chunk in batched(islice(rows, cfg.eval_max_rows), EVAL_CHUNK):
            examples = self.usable(chunk, count=False)
            for ids, mask, labels, features in self.micro_batches(examples, 2 * cfg.micro_batch_size):
                loss += self.loss_sum(ids, mask, labels, features).item()
                tokens += int((labels[:, 1:] != IGNORE).sum())
        self.model.train()
        return loss / tokens if tokens else None

    # --- the run ---------------------------------------------------------------------------------

    def run_evaluation(self) -> None:
        """Evaluate now (once per step), keep the best adapter, count towards early stopping."""
        p = self.progress
        if p.last_eval_step == p.step or not self.data.validate_rows:
            return
        eval_loss = self.evaluate()
        since = p.losses[(p.evals[-1]["step"] if p.evals else 0):]
        p.evals.append({"step": p.step, "epoch": p.epoch, "eval_loss": eval_loss,
                        "train_loss": sum(since) / len(since) if since else None})
        log.info("step %d  eval loss %s", p.step, eval_loss)
        if eval_loss is None:
            return
        if p.best_eval is None or eval_loss < p.best_eval:
            p.best_eval, p.best_step, p.evals_since_best = eval_loss, p.step, 0
            self.save_adapter(eval_loss)
            return
        p.evals_since_best += 1
        patience = self.cfg.early_stopping_patience
        if patience and p.evals_since_best >= patience:
            p.stop_reason = "early_stopping"

    def train_epoch(self) -> None:
        cfg, p = self.cfg, self.progress
        if p.epoch >= cfg.epochs:
            p.stop_reason = "epochs"
            return
        if cfg.max_steps and p.step >= cfg.max_steps:
            p.stop_reason = "max_steps"
            return
        rows = stream_rows(self.data.train, "train", self.data.tasks, seed=cfg.seed, purpose="train",
                           epoch=p.epoch, buffer_size=cfg.shuffle_buffer)
        for chunk in batched(islice(rows, p.rows_in_epoch, None), cfg.rows_per_step):
            if not self.train_step(chunk):
                continue
            if cfg.eval_every and p.step % cfg.eval_every == 0:
                self.run_evaluation()
            if p.step % cfg.save_every == 0:
                self.save_checkpoint()
            if cfg.max_steps and p.step >= cfg.max_steps and not p.stop_reason:
                p.stop_reason = "max_steps"
            if p.stop_reason:
                return
        p.epoch += 1
        p.rows_in_epoch = 0
        self.run_evaluation()
        self.save_checkpoint()

    def run(self) -> Progress:
        """Train until epochs, max_steps or early stopping; the adapter holds the best-evaluated weights
        (the last ones when there is no validation split)."""
        self.model.train()
        while self.progress.stop_reason is None:
            self.train_epoch()
        self.run_evaluation()
        if self.progress.best_step is None:
            self.save_adapter(None)
        self.save_checkpoint()
        return self.progress
