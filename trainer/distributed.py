"""Data parallelism: the ranks a launcher started, and what they share.

Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1) :func:`start` creates an
``accelerate.Accelerator``: it joins the process group (NCCL on GPUs, gloo on CPUs), gives each
rank its device (``cuda:<LOCAL_RANK>``) and wraps the model in ``DistributedDataParallel``. A plain
``python`` / ``radialog-instruct`` run gets the one-rank :class:`Ranks`, whose collectives are
no-ops and which leaves the model unwrapped, so the single-process trainer is what it always was.

The rule the trainer builds on: an optimizer step is a fixed number of consecutive rows of the
seeded global order (``train.micro_batch_size * train.grad_accum``, whatever the world size), and
rank ``r`` of ``W`` trains on rows ``r, r + W, r + 2W, ...`` of it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..tasks.errors import ConfigError, InputError


def world_size() -> int:
    """Processes the launcher started (1 without a launcher); read from the environment, no import."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """This process's global rank (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


@dataclass
class Ranks:
    rank: int = 0
    world: int = 1
    #: the ``accelerate.Accelerator`` of a launched run; None for one process
    accelerator: Any = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device | None:
        """The rank's device under a launcher; None lets the runtime pick it."""
        return self.accelerator.device if self.accelerator is not None else None

    @property
    def backend(self) -> str:
        return torch.distributed.get_backend() if self.world > 1 else "none"

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module to train through: DDP over ``model`` under a launcher, else ``model``."""
        return self.accelerator.prepare_model(model) if self.accelerator is not None else model

    def no_sync(self, model: nn.Module, sync: bool) -> AbstractContextManager:
        """Skip DDP's gradient all-reduce for a backward pass unless ``sync``."""
        if self.accelerator is None or sync:
            return nullcontext()
        return self.accelerator.no_sync(model)

    def all_reduce(self, values: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Element-wise sum (or max) over ranks, in place; CPU tensors go through the device for NCCL."""
        if self.world == 1:
            return values
        device = self.accelerator.device
        moved = values.to(device)
        torch.distributed.all_reduce(moved, op=torch.distributed.ReduceOp.SUM if op == "sum"
                                     else torch.distributed.ReduceOp.MAX)
        values.copy_(moved.to(values.device))
        return values

    def barrier(self) -> None:
        if self.world > 1:
            torch.distributed.barrier()

    def on_main(self, fn: Callable[[], Any]) -> None:
        """Run ``fn`` on rank 0 while the others wait; a one-line error it raises is raised on every rank."""
        error: Exception | None = None
        if self.is_main:
            try:
                fn()
            except (InputError, ConfigError) as err:
                error = err
        if self.world > 1:
            box = [error]
            torch.distributed.broadcast_object_list(box, src=0)
            error = box[0]
        if error is not None:
            raise error


def start(*, find_unused_parameters: bool) -> Ranks:
    """The ranks of this run; under a launcher, join the process group (once per process).

    ``find_unused_parameters``: some trainable parameters (the image projector) take no part in a
    micro-batch without images, so DDP must look for them.
    """
    if world_size() == 1:
        return Ranks()
    from accelerate import Accelerator, DistributedType
    from accelerate.utils import DistributedDataParallelKwargs

    ddp = DistributedDataParallelKwargs(find_unused_parameters=find_unused_parameters)
    # without a GPU, accelerate joins the ranks over gloo only when told the run is a CPU one
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), kwargs_handlers=[ddp], mixed_precision="no")
    if accelerator.distributed_type not in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise ConfigError(f"train: the launcher's {accelerator.distributed_type.value} setup is not supported; "
                          f"launch plain data parallelism (accelerate launch --multi_gpu, or torchrun)")
    return Ranks(accelerator.process_index, accelerator.num_processes, accelerator)
