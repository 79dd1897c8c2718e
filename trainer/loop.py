"""The training loop: streamed steps, token-weighted loss, evaluation, early stopping, checkpoints.

A plain PyTorch loop rather than ``transformers.Trainer``: the data is a seeded stream whose
position (epoch, rows consumed) must be checkpointed and replayed exactly; the image hook feeds
``inputs_embeds`` built from looked-up features; and the loss of one optimizer step is the mean over
*all* supervised tokens of its ``grad_accum`` micro-batches (each micro-batch's summed loss is
divided by the step's token count, so long and short answers weigh per token, as in one big batch).
Those three are each a few lines here and would each be a subclass override there.

One optimizer step consumes ``micro_batch_size * grad_accum`` rows of the stream (fewer at an
epoch's end) whatever the number of ranks; rank ``r`` of ``W`` tokenises rows ``r, r + W, ...`` of
them and cuts its share into micro-batches of similar length. Every rank divides its summed token
loss by the step's token count over all ranks, so DDP's gradient all-reduce yields the gradient of
the per-token mean over the whole step, as one process would compute it. Dropout draws are seeded
per (step, rank), so a resumed run on the same ranks replays them exactly.
"""

from __future__ import annotations

import logging
import math
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..tasks.hashing import hash64
from . import checkpoint
from .checkpoint import Progress
from .config import TrainConfig
from .distributed import Ranks
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


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]


class Trainer:
    def __init__(self, cfg: TrainConfig, model: GroundedLM, tokenizer, encoder: Encoder,
                 provider: FeatureProvider | None, data: Data, runtime: Runtime, out_dir: Path,
                 metadata: dict[str, Any], resume_key: str, ranks: Ranks | None = None):
        self.cfg, self.model, self.tokenizer, self.encoder = cfg, model, tokenizer, encoder
        self.provider, self.data, self.runtime, self.metadata = provider, data, runtime, metadata
        self.ranks = ranks or Ranks()
        #: what forward and backward go through: DDP over ``model`` under a launcher
        self.engine = self.ranks.wrap(model, find_unused_parameters=model.projector is not None)
        self.adapter_dir = out_dir / "adapter"
        self.checkpoint_dir = out_dir / "checkpoints"
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_schedule(cfg.lr_scheduler, cfg.warmup_steps, total_steps(cfg, data.train_rows)))
        self.progress = Progress(resume_key)
        self._saved_step: int | None = None

    # --- state -----------------------------------------------------------------------------------

    def resume(self) -> bool:
        """Load the newest checkpoint, if any; True when training continues from one (any number of ranks:
        the checkpoint holds a position in the global row order, see trainer/checkpoint.py)."""
        found = checkpoint.checkpoints(self.checkpoint_dir)
        if not found:
            return False
        progress, state = checkpoint.load(found[-1], self.progress.resume_key)
        self.model.load_trainable_state(state["trainable"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if progress.stop_reason != "early_stopping":
            progress.stop_reason = None  # more epochs or steps may have been allowed since
        self.progress, self._saved_step = progress, progress.step
        log.info("resuming from %s (epoch %d, %d rows into it)", found[-1].name, progress.epoch, progress.rows_in_epoch)
        return True

    def discard_checkpoints(self) -> None:
        shutil.rmtree(self.checkpoint_dir, ignore_errors=True)

    def save_checkpoint(self) -> None:
        """Written by rank 0 only (the ranks hold the same weights and progress)."""
        if self._saved_step == self.progress.step:
            return
        if self.ranks.is_main:
            checkpoint.save(self.checkpoint_dir, self.progress, self.model.trainable_state(), self.optimizer,
                            self.scheduler, self.cfg.keep_checkpoints)
        self._saved_step = self.progress.step

    def save_adapter(self, eval_loss: float | None) -> None:
        p = self.progress
        if self.ranks.is_main:
            save_adapter(self.model, self.tokenizer, self.adapter_dir,
                         {**self.metadata, "step": p.step, "epoch": p.epoch, "eval_loss": eval_loss})

    # --- steps -----------------------------------------------------------------------------------

    def usable(self, rows: Sequence[Row]) -> tuple[list[Example], Counter[Skip]]:
        """Encode ``rows``; the ones that can be trained on, and why the others cannot."""
        kept, skipped = [], Counter()
        for ex in self.encoder.encode(rows):
            if isinstance(ex, Example) and ex.has_image and not self.provider.has(ex.dicom_id):
                ex = Skip.NO_FEATURES
            if isinstance(ex, Example):
                kept.append(ex)
            else:
                skipped[ex] += 1
        return kept, skipped

    def micro_batches(self, examples: list[Example], size: int) -> Iterator[Batch]:
        """Padded batches of ``size`` examples of similar length, on the device."""
        ordered = sorted(examples, key=lambda ex: len(ex.input_ids))
        for group in batched(ordered, size):
            batch = collate(group, self.tokenizer.pad_token_id)
            features = self.provider.features(batch.image_dicoms) if batch.image_dicoms else None
            device = self.runtime.device
            yield batch.input_ids.to(device), batch.attention_mask.to(device), batch.labels.to(device), features

    def filler(self) -> Batch:
        """Two padding tokens without a label: a rank with fewer micro-batches than another runs these
        (loss 0) so that every rank does as many forward and backward passes as the others."""
        ids = torch.full((1, 2), self.tokenizer.pad_token_id, dtype=torch.long, device=self.runtime.device)
        return ids, torch.ones_like(ids), torch.full_like(ids, IGNORE), None

    def loss_sum(self, module: nn.Module, batch: Batch) -> torch.Tensor:
        ids, mask, labels, features = batch
        with self.runtime.autocast():
            logits = module(ids, mask, features)
        return token_loss_sum(logits, labels)

    def step_counts(self, examples: list[Example], skipped: Counter[Skip]) -> tuple[int, int]:
        """Supervised tokens of the whole step and the most micro-batches any rank has; adds the
        step's skipped rows (all ranks) to the progress."""
        ranks, reasons = self.ranks, list(Skip)
        counts = torch.zeros(1 + len(reasons) + ranks.world, dtype=torch.int64)
        counts[0] = sum(ex.n_labels for ex in examples)
        counts[1:1 + len(reasons)] = torch.tensor([skipped[r] for r in reasons])
        counts[1 + len(reasons) + ranks.rank] = math.ceil(len(examples) / self.cfg.micro_batch_size)
        counts = ranks.all_reduce(counts).tolist()
        for reason, n in zip(reasons, counts[1:1 + len(reasons)], strict=True):
            if n:
                self.progress.skipped[reason.value] = self.progress.skipped.get(reason.value, 0) + n
        return counts[0], max(counts[1 + len(reasons):])

    def train_step(self, rows: Sequence[Row]) -> bool:
        """One optimizer step over ``rows`` (this rank's share of them); False when none of the rows
        had a supervised token."""
        cfg, p, ranks = self.cfg, self.progress, self.ranks
        p.rows_in_epoch += len(rows)
        examples, skipped = self.usable(rows[ranks.rank::ranks.world])
        n_tokens, n_micro = self.step_counts(examples, skipped)
        if not n_tokens:
            return False
        torch.manual_seed(hash64(f"{cfg.seed}|dropout|{p.step}|{ranks.rank}"))
        scale = ranks.world / n_tokens  # DDP averages the ranks' gradients; their sum is what is wanted
        batches = self.micro_batches(examples, cfg.micro_batch_size)
        local = torch.zeros((), dtype=torch.float64)
        for i in range(n_micro):
            with ranks.no_sync(self.engine, sync=i == n_micro - 1):
                loss = self.loss_sum(self.engine, next(batches, None) or self.filler())
                (loss * scale).backward()
            local += loss.item()
        total = float(ranks.all_reduce(local)) / n_tokens
        torch.nn.utils.clip_grad_norm_(self.trainable, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        p.step += 1
        p.tokens += n_tokens
        p.losses.append(total)
        if p.step % cfg.log_every == 0:
            log.info("step %d  loss %.4f  lr %.2e", p.step, total, self.scheduler.get_last_lr()[0])
        return True

    @torch.no_grad()
    def evaluate(self) -> float | None:
        """Token-weighted mean loss over the (seeded, capped) validation rows, shared out like training
        rows; None without any."""
        cfg, ranks = self.cfg, self.ranks
        rows = stream_rows(self.data.validate, "validate", self.data.tasks, seed=cfg.seed, purpose="eval", epoch=0,
                           buffer_size=cfg.shuffle_buffer)
        self.engine.eval()
        totals = torch.zeros(2, dtype=torch.float64)  # summed loss, supervised tokens
        for chunk in batched(islice(rows, cfg.eval_max_rows), EVAL_CHUNK):
            examples, _ = self.usable(chunk[ranks.rank::ranks.world])
            for batch in self.micro_batches(examples, 2 * cfg.micro_batch_size):
                totals[0] += self.loss_sum(self.model, batch).item()  # the bare model: no DDP collectives
                totals[1] += int((batch[2][:, 1:] != IGNORE).sum())
        self.engine.train()
        loss, tokens = ranks.all_reduce(totals).tolist()
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
        self.engine.train()
        while self.progress.stop_reason is None:
            self.train_epoch()
        self.run_evaluation()
        if self.progress.best_step is None:
            self.save_adapter(None)
        self.save_checkpoint()
        return self.progress
