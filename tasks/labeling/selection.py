"""Which labeler runs (``label.labeler``), and building it.

``auto`` is resolved offline, from what is on this machine: CheXbert when its weights (a configured
local checkpoint that exists, or the hub file already in the HF cache) and its encoder (a local
folder or the HF cache) are present, the rule labeler otherwise. Nothing here touches the network,
so stage stamps - which record the resolved choice - never depend on connectivity, and every
call in a run resolves the same way. ``chexbert`` downloads missing weights when the stage runs
(:func:`chexbert_checkpoint`); after that, ``auto`` finds them in the cache. The choice and its
reason are logged on ``radialog_instruct.label`` and kept in the stage summaries.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError

from ..errors import ConfigError, InputError
from .interface import Labeler
from .settings import ChexbertConfig, LabelConfig

log = logging.getLogger("radialog_instruct.label")

_TOKENIZER_FILES = ("tokenizer.json", "vocab.txt")


@dataclass(frozen=True)
class Choice:
    labeler: str  # chexbert | rules | provided
    reason: str


def hub_offline() -> bool:
    flag = os.environ.get("HF_HUB_OFFLINE", "").strip().lower()
    return bool(constants.HF_HUB_OFFLINE) or flag in ("1", "true", "yes", "on")


def _cached(repo: str, filename: str, revision: str | None = None) -> Path | None:
    try:
        found = try_to_load_from_cache(repo, filename, revision=revision)
    except HFValidationError:  # not a hub id (e.g. a local path that does not exist)
        return None
    return Path(found) if isinstance(found, str) else None


def local_checkpoint(cfg: ChexbertConfig) -> Path | None:
    return Path(cfg.checkpoint).expanduser() if cfg.checkpoint else None


def _local_weights(cfg: ChexbertConfig) -> Path | None:
    """The weights file on this machine (configured checkpoint or HF cache), or None."""
    local = local_checkpoint(cfg)
    if local is not None:
        return local if local.is_file() else None
    return _cached(cfg.hub_repo, cfg.hub_file, cfg.hub_revision)


def _local_encoder(encoder: str) -> bool:
    if Path(encoder).expanduser().is_dir():
        return True
    return _cached(encoder, "config.json") is not None and any(_cached(encoder, f) for f in _TOKENIZER_FILES)


def chexbert_files(cfg: ChexbertConfig) -> list[Path]:
    """The local files CheXbert's labels depend on (for stage fingerprints): the weights file and a
    local encoder folder, where they exist."""
    weights = _local_weights(cfg)
    encoder = Path(cfg.encoder).expanduser()
    return [p for p in (weights, encoder if encoder.is_dir() else None) if p is not None]


def choose_labeler(cfg: LabelConfig, requested: str | None = None) -> Choice:
    """Resolve ``requested`` (default ``cfg.labeler``); ``auto`` -> chexbert or rules, offline."""
    name = requested or cfg.labeler
    if name != "auto":
        choice = Choice(name, f"requested ({name})")
    else:
        weights = _local_weights(cfg.chexbert)
        local = local_checkpoint(cfg.chexbert)
        if weights is None:
            where = f"checkpoint {local} does not exist" if local is not None else \
                f"{cfg.chexbert.hub_repo}/{cfg.chexbert.hub_file} is not in the HF cache"
            choice = Choice("rules", f"auto: CheXbert weights not on this machine ({where}; "
                                     "label.labeler: chexbert downloads them)")
        elif not _local_encoder(cfg.chexbert.encoder):
            choice = Choice("rules", f"auto: CheXbert weights found ({weights}) but the encoder "
                                     f"{cfg.chexbert.encoder} is neither a folder nor in the HF cache")
        else:
            where = f"local checkpoint {weights}" if local is not None else \
                f"{cfg.chexbert.hub_repo}/{cfg.chexbert.hub_file} in the HF cache"
            choice = Choice("chexbert", f"auto: CheXbert weights available ({where})")
    log.info("labeler: %s - %s", choice.labeler, choice.reason)
    return choice


def chexbert_checkpoint(cfg: ChexbertConfig) -> Path:
    """The local checkpoint, or the hub file (downloaded into the HF cache when needed)."""
    local = local_checkpoint(cfg)
    if local is not None:
        if not local.is_file():
            raise InputError(local, "checkpoint file not found (label.chexbert.checkpoint)",
                             expected="CheXbert's chexbert.pth")
        return local
    cached = _cached(cfg.hub_repo, cfg.hub_file, cfg.hub_revision)
    if cached is not None:
        return cached
    if hub_offline():
        raise ConfigError(f"CheXbert weights {cfg.hub_repo}/{cfg.hub_file} are not in the HF cache and "
                          "HF_HUB_OFFLINE is set: set label.chexbert.checkpoint or use --labeler rules")
    try:
        return Path(hf_hub_download(cfg.hub_repo, cfg.hub_file, revision=cfg.hub_revision))
    except Exception as err:  # noqa: BLE001 - network and hub errors of many kinds end here
        raise ConfigError(f"cannot download CheXbert weights {cfg.hub_repo}/{cfg.hub_file} "
                          f"({type(err).__name__}: {' '.join(str(err).split())[:200]}): set "
                          "label.chexbert.checkpoint to a local chexbert.pth or use --labeler rules") from None


def build_labeler(name: str, cfg: LabelConfig) -> Labeler:
    """The text labeler ``name`` (chexbert | rules)."""
    if name == "rules":
        from .rules import RuleLabeler
        return RuleLabeler()
    if name == "chexbert":
        from .chexbert import ChexbertLabeler
        c = cfg.chexbert
        return ChexbertLabeler(chexbert_checkpoint(c), c.encoder, batch_size=c.batch_size, device=c.device,
                               dtype=c.dtype)
    raise ConfigError(f"labeler {name!r} does not label text (use chexbert or rules)")
