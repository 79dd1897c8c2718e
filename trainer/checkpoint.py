"""Resumable training state: progress counters and atomic checkpoints.

``<output_dir>/checkpoints/step-NNNNNNN/`` holds ``state.pt`` (trainable weights, optimizer and
scheduler state) and ``progress.json`` (step, epoch, rows consumed in the epoch, eval history,
early-stopping counters, the run's resume key). Each folder is written under a temporary name and
renamed into place, so the newest folder is always complete; the oldest beyond
``keep_checkpoints`` are removed. Rank 0 writes them; every rank of a resumed run reads them.

The resume rule: the position is ``(epoch, rows_in_epoch)`` in the seeded *global* row order of
the epoch, always at a step boundary, and a step is ``micro_batch_size * grad_accum`` rows of that
order whatever the number of ranks. A run resumed on any number of ranks skips exactly
``rows_in_epoch`` rows and deals the following steps' rows out to its own ranks: no row is repeated
or skipped, and the updates are those of the interrupted run up to float summation order (and
dropout draws, which are seeded per step and rank).
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..tasks.errors import ConfigError
from ..tasks.io import atomic_path, read_json, write_json

PREFIX = "step-"
STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"


@dataclass
class Progress:
    resume_key: str
    step: int = 0
    #: epochs completed
    epoch: int = 0
    #: rows drawn from this epoch's shuffled stream (skipped rows included)
    rows_in_epoch: int = 0
    #: supervised tokens trained on
    tokens: int = 0
    #: mean token loss of every optimizer step
    losses: list[float] = field(default_factory=list)
    #: one record per evaluation: step, epoch, eval_loss, train_loss (mean since the previous one)
    evals: list[dict[str, Any]] = field(default_factory=list)
    best_eval: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    #: why training ended: epochs | max_steps | early_stopping (null while running)
    stop_reason: str | None = None

    @property
    def last_eval_step(self) -> int | None:
        return self.evals[-1]["step"] if self.evals else None


def checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders, oldest first."""
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and p.name.startswith(PREFIX))


def save(root: Path, progress: Progress, trainable: dict[str, torch.Tensor], optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, keep: int) -> Path:
    target = root / f"{PREFIX}{progress.step:07d}"
    with atomic_path(target, directory=True) as tmp:
        torch.save({"trainable": trainable, "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict()}, tmp / STATE_FILE)
        write_json(dataclasses.asdict(progress), tmp / PROGRESS_FILE)
    for old in checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return target


def load(path: Path, resume_key: str) -> tuple[Progress, dict[str, Any]]:
    """The progress and tensor state of a checkpoint; refuses one written for other data or settings."""
    progress = Progress(**read_json(path / PROGRESS_FILE))
    if progress.resume_key != resume_key:
        raise ConfigError(f"{path}: checkpoint was written for other shards or training settings; "
                          f"start over with --no-resume (or another train.output_dir)")
    return progress, torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)

