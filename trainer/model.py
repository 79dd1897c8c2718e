"""The model side: base LM + tokenizer, LoRA, the image-grounded wrapper, and the saved adapter.

:class:`GroundedLM` bundles the PEFT model and the optional projector, so one module holds every
trainable parameter (``lm.*`` LoRA weights, ``projector.*``). The adapter folder is what
``PeftModel.from_pretrained`` reads, plus the tokenizer it was trained with, ``projector.safetensors``
when image features were used, and ``radialog_metadata.json`` (dataset version, manifest sha256,
config hashes, base model and revision). :func:`load_adapter` rebuilds all of it for generation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..tasks.errors import ConfigError, InputError
from ..tasks.io import atomic_path, read_json, write_json
from ..tasks.models.tiny_llama import build_tiny_llama
from ..tasks.text.conversation import Conversation, Message, load_conversation
from ..tasks.workdir import Workdir
from .config import DEMO_MODEL, LoraSettings
from .encode import Encoder, ImageSlot
from .features import PROJECTOR_FILE, build_projector

METADATA_FILE = "radialog_metadata.json"


@dataclass(frozen=True)
class BaseModel:
    #: the configured name (a hub id, a local folder, or "demo-tiny")
    name: str
    #: what ``from_pretrained`` is given
    path: str
    revision: str | None


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    dtype: torch.dtype

    def autocast(self) -> AbstractContextManager:
        if self.dtype == torch.float32:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)


def resolve_base(name: str, revision: str | None, wd: Workdir, texts: Callable[[], Iterable[str]],
                 seed: int) -> BaseModel:
    """The demo name builds (once) a tiny random Llama whose tokenizer is trained on ``texts()``."""
    if name != DEMO_MODEL:
        return BaseModel(name, name, revision)
    path = wd.models / DEMO_MODEL
    if not (path / "config.json").exists():
        build_tiny_llama(path, texts(), seed=seed)
    return BaseModel(name, str(path), None)


def pick_runtime(dtype: str, load_in_8bit: bool, device: torch.device | None = None) -> Runtime:
    """``device``: the rank's device under a launcher; by default the GPU if there is one."""
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    if load_in_8bit and not cuda:
        raise ConfigError("params: train.load_in_8bit needs a CUDA GPU")
    if dtype == "auto":
        return Runtime(device, torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float32)
    return Runtime(device, getattr(torch, dtype))


def load_tokenizer(path: str, revision: str | None):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, revision=revision)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def add_image_token(tokenizer, token: str) -> int:
    """Register ``<IMG>`` as one special token (an id past the embedding table is fine: never embedded)."""
    from tokenizers import AddedToken

    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False)], special_tokens=True)
    return tokenizer.convert_tokens_to_ids(token)


def load_lm(base: BaseModel, runtime: Runtime, *, load_in_8bit: bool) -> nn.Module:
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": base.revision, "dtype": runtime.dtype}
    if load_in_8bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise ConfigError("params: train.load_in_8bit needs bitsandbytes (pip install bitsandbytes)") from None
        from transformers import BitsAndBytesConfig

        kwargs.update(quantization_config=BitsAndBytesConfig(load_in_8bit=True),
                      device_map={"": runtime.device.index or 0})
    try:
        model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    except OSError as err:
        reason = str(err).splitlines()[0]
        raise ConfigError(f"params: train.base_model {base.name!r} cannot be loaded: {reason}") from None
    if load_in_8bit:
        from peft import prepare_model_for_kbit_training

        return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model.to(runtime.device)


def add_lora(model: nn.Module, lora: LoraSettings, revision: str | None) -> nn.Module:
    from peft import LoraConfig, TaskType, get_peft_model

    targets: str | list[str] = "all-linear" if lora.target_modules == ["all-linear"] else list(lora.target_modules)
    config = LoraConfig(task_type=TaskType.CAUSAL_LM, r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                        target_modules=targets, bias="none", revision=revision)
    return get_peft_model(model, config)


class GroundedLM(nn.Module):
    """A (PEFT) causal LM whose image placeholder positions take projected image features."""

    def __init__(self, lm: nn.Module, projector: nn.Module | None = None, image_token_id: int | None = None):
        super().__init__()
        self.lm = lm
        self.projector = projector
        self.image_token_id = image_token_id

    def embed(self, input_ids: torch.Tensor, features: torch.Tensor | None) -> torch.Tensor:
        table = self.lm.get_input_embeddings()
        if self.projector is None:
            return table(input_ids)
        slots = input_ids == self.image_token_id
        embeds = table(input_ids.masked_fill(slots, 0))
        if not slots.any():
            return embeds
        weight = next(self.projector.parameters())
        projected = self.projector(features.to(weight.device, weight.dtype)).to(embeds.dtype)
        if projected.shape[0] * projected.shape[1] != int(slots.sum()):
            raise ValueError(f"{int(slots.sum())} image positions but features for {projected.shape[0]} x "
                             f"{projected.shape[1]}")
        return embeds.masked_scatter(slots.unsqueeze(-1), projected.reshape(-1, projected.shape[-1]))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                features: torch.Tensor | None = None) -> torch.Tensor:
        return self.lm(inputs_embeds=self.embed(input_ids, features), attention_mask=attention_mask).logits

    def trainable_state(self) -> dict[str, torch.Tensor]:
        return {name: p.detach().cpu().clone() for name, p in self.named_parameters() if p.requires_grad}

    def load_trainable_state(self, state: dict[str, torch.Tensor]) -> None:
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}
        if set(params) != set(state):
            raise ValueError("checkpoint parameters do not match the model's trainable parameters")
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(state[name])


def save_adapter(model: GroundedLM, tokenizer, out_dir: Path, metadata: dict[str, Any]) -> Path:
    """Write the adapter folder atomically (replacing an older one as a whole)."""
    from safetensors.torch import save_file

    with atomic_path(out_dir, directory=True) as tmp:
        model.lm.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        if model.projector is not None:
            save_file({k: v.detach().cpu().contiguous() for k, v in model.projector.state_dict().items()},
                      tmp / PROJECTOR_FILE)
        write_json(metadata, tmp / METADATA_FILE)
    return out_dir


@dataclass
class TrainedModel:
    """A reloaded adapter, ready to answer conversations."""

    model: GroundedLM
    encoder: Encoder
    metadata: dict[str, Any]
    device: torch.device

    @torch.no_grad()
    def generate(self, messages: Sequence[Message], *, features: torch.Tensor | None = None,
                 max_new_tokens: int = 64) -> str:
        """Greedy answer to ``messages`` (ending with a user turn); ``features``: (1, n_tokens, dim)."""
        tokenizer = self.encoder.tokenizer
        ids = torch.tensor([self.encoder.encode_prompt(messages)], device=self.device)
        embeds = self.model.embed(ids, features)
        out = self.model.lm.generate(inputs_embeds=embeds, attention_mask=torch.ones_like(ids),
                                     max_new_tokens=max_new_tokens,
                                     do_sample=False, pad_token_id=tokenizer.pad_token_id,
                                     eos_token_id=tokenizer.eos_token_id)
        return tokenizer.decode(out[0], skip_special_tokens=True).strip()


def load_adapter(adapter_dir: str | Path, *, base_path: str | None = None) -> TrainedModel:
    """Base model (``base_path`` or the one recorded in the metadata) + adapter + projector, for inference."""
    from peft import PeftModel
    from safetensors.torch import load_file

    adapter_dir = Path(adapter_dir)
    if not (adapter_dir / METADATA_FILE).exists():
        raise InputError(adapter_dir / METADATA_FILE, "file not found", expected="an adapter written by the trainer")
    meta = read_json(adapter_dir / METADATA_FILE)
    base = BaseModel(meta["base_model"], base_path or meta["base_model_path"], meta.get("base_revision"))
    runtime = pick_runtime("auto", load_in_8bit=False)
    lm = PeftModel.from_pretrained(load_lm(base, runtime, load_in_8bit=False), str(adapter_dir)).eval()
    tokenizer = load_tokenizer(str(adapter_dir), None)
    recorded = meta.get("conversation") or {}
    # adapters of earlier versions recorded only the name and version of the packaged format
    conversation = Conversation(**recorded) if "system" in recorded else load_conversation()
    image = meta.get("image")
    projector, slot = None, None
    if image:
        projector = build_projector(image["projector"], image["dim"], lm.get_input_embeddings().embedding_dim)
        projector.load_state_dict(load_file(adapter_dir / PROJECTOR_FILE))
        slot = ImageSlot(tokenizer.convert_tokens_to_ids(conversation.image_token), image["n_tokens"])
    model = GroundedLM(lm, projector.to(runtime.device) if projector else None, slot.token_id if slot else None)
    encoder = Encoder(tokenizer, conversation, max_length=meta["max_length"], supervise=meta["supervise"], image=slot)
    return TrainedModel(model.eval(), encoder, meta, runtime.device)
