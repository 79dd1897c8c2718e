"""The bundled LoRA trainer: PEFT LoRA fine-tuning of a causal LM (default Vicuna-7B v1.5) on the
shards of one dataset version, in the Vicuna v1.1 conversation format with the loss on assistant
tokens only, optionally grounded on precomputed image features.

Entry points: :func:`run_train` (``radialog-instruct train``) and :func:`stage_spec` for the stage
stamps; :func:`load_adapter` reloads a trained adapter for generation. Modules: ``config`` (the
``train:`` section), ``stage`` (what the stage reads and writes), ``shards`` (streamed, seeded
reading), ``encode`` (tokens and loss labels), ``features`` (the image hook), ``model`` (base model,
LoRA, adapter files), ``loop`` (the training loop), ``checkpoint`` (resumable state),
``distributed`` (the ranks of a launched run), ``run`` (the stage), ``launch`` (the stage under
accelerate launch / torchrun), ``chat_template`` (the conversation format for TRL and other Hugging
Face trainers). Importing the package does not import torch: the names that need it load on first
use.
"""

from typing import Any

from .config import TrainConfig
from .stage import stage_spec

__all__ = ["FeatureProvider", "TrainConfig", "TrainedModel", "load_adapter", "run_train", "stage_spec"]


def __getattr__(name: str) -> Any:
    if name == "run_train":
        from .run import run_train
        return run_train
    if name == "FeatureProvider":
        from .features import FeatureProvider
        return FeatureProvider
    if name in ("TrainedModel", "load_adapter"):
        from . import model
        return getattr(model, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
