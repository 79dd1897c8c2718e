"""The bundled LoRA trainer: PEFT LoRA fine-tuning of a causal LM (default Vicuna-7B v1.5) on the
shards of one dataset version, in the Vicuna v1.1 conversation format with the loss on assistant
tokens only, optionally grounded on precomputed image features.

Entry points: :func:`run_train` (``radialog-instruct train``) and :func:`stage_spec` for the stage
stamps; :func:`load_adapter` reloads a trained adapter for generation. Modules: ``config`` (the
``train:`` section), ``shards`` (streamed, seeded reading), ``encode`` (tokens and loss labels),
``features`` (the image hook), ``model`` (base model, LoRA, adapter files), ``loop`` (the training
loop), ``checkpoint`` (resumable state), ``distributed`` (the ranks of a launched run), ``run``
(the stage), ``launch`` (the stage under accelerate launch / torchrun), ``chat_template`` (the
conversation format for TRL and other Hugging Face trainers).
"""

from .config import TrainConfig
from .features import FeatureProvider
from .model import TrainedModel, load_adapter
from .run import run_train, stage_spec

__all__ = ["FeatureProvider", "TrainConfig", "TrainedModel", "load_adapter", "run_train", "stage_spec"]
