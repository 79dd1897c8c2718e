"""Data parallelism: the ranks a launcher started, and what they share.

Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1) :func:`start` reads the launch
through accelerate's ``PartialState``, which joins the process group once per process (NCCL on
GPUs, gloo on CPUs) and names each rank's device (``cuda:<LOCAL_RANK>``); :meth:`Ranks.wrap` puts
the model in PyTorch's ``DistributedDataParallel``. A plain ``python`` / ``radialog-instruct`` run
gets the one-rank :class:`Ranks`, whose collectives are no-ops and which leaves the model
unwrapped, so the single-process trainer is what it always was.

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
    """Processes the launcher started (1 without a launcher), from the environment it sets."""
    return int(os.environ.get("WORLD_SIZE", "1"))


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world: int = 1
    #: the rank's device under a launcher; None lets the runtime pick it
    device: torch.device | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def backend(self) -> str:
        return torch.distributed.get_backend() if self.world > 1 else "none"

    def wrap(self, model: nn.Module, *, find_unused_parameters: bool) -> nn.Module:
        """The module to train through: DDP over ``model`` under a launcher, else ``model``.

        ``find_unused_parameters``: some trainable parameters (the image projector) take no part in
        a micro-batch without images, so DDP must look for them.
        """
        if self.world == 1:
            return model
        on_gpu = self.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(model, device_ids=[self.device.index] if on_gpu else None,
                                                   find_unused_parameters=find_unused_parameters)

    def no_sync(self, model: nn.Module, sync: bool) -> AbstractContextManager:
        """Skip DDP's gradient all-reduce for a backward pass unless ``sync``."""
        return nullcontext() if self.world == 1 or sync else model.no_sync()

    def all_reduce(self, values: torch.Tensor) -> torch.Tensor:
        """Element-wise sum over ranks, in place (through the rank's device: NCCL takes no CPU tensors)."""
        if self.world == 1:
            return values
        moved = values.to(self.device)
        torch.distributed.all_reduce(moved)
        values.copy_(moved.to(values.device))
        return values

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


def start() -> Ranks:
    """The ranks of this run; under a launcher, join the process group (the first call per process)."""
    if world_size() == 1:
        return Ranks()
    from accelerate import DistributedType, PartialState

    for engine in ("FSDP", "DEEPSPEED"):
        if os.environ.get(f"ACCELERATE_USE_{engine}", "false").lower() == "true":
            raise ConfigError(f"train: {engine} launches are not supported; launch plain data parallelism "
                              f"(accelerate launch --multi_gpu, or torchrun)")
    # without a GPU, accelerate joins the ranks over gloo only when told the run is a CPU one
    state = PartialState(cpu=not torch.cuda.is_available())
    if state.distributed_type not in (DistributedType.MULTI_GPU, DistributedType.MULTI_CPU):
        raise ConfigError(f"train: a {state.distributed_type.value} launch is not supported; launch plain data "
                          f"parallelism (accelerate launch --multi_gpu, or torchrun)")
    return Ranks(state.process_index, state.num_processes, state.device)
