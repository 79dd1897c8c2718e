"""Which labeler runs (``label.labeler``), and building it.

``auto`` picks CheXbert when its weights and encoder can be had - a configured local checkpoint that
exists, or the hub file already in the HF cache, or a hub that answers within a few seconds (never
when ``HF_HUB_OFFLINE`` is set) - and the rule labeler otherwise. The choice and its reason are
logged on ``radialog_instruct.label``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import constants, get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import HFValidationError

from ..errors import ConfigError, InputError
from .interface import Labeler
from .settings import ChexbertConfig, LabelConfig

log = logging.getLogger("radialog_instruct.label")

#: Seconds to wait for the hub before falling back to the rule labeler.
HUB_TIMEOUT_S = 5.0
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


def hub_reachable(repo: str, filename: str, revision: str | None = None) -> bool:
    """Whether the hub serves ``repo/filename`` now (a HEAD request with a short timeout)."""
    if hub_offline():
        return False
    try:
        get_hf_file_metadata(hf_hub_url(repo, filename, revision=revision), timeout=HUB_TIMEOUT_S)
    except Exception:  # noqa: BLE001 - any failure (DNS, timeout, 4xx) means "not reachable now"
        return False
    return True


def local_checkpoint(cfg: ChexbertConfig) -> Path | None:
    return Path(cfg.checkpoint).expanduser() if cfg.checkpoint else None


def _weights_source(cfg: ChexbertConfig) -> str | None:
    """Where the weights would come from, or None when they cannot be had."""
    local = local_checkpoint(cfg)
    if local is not None and local.is_file():
        return f"local checkpoint {local}"
    if _cached(cfg.hub_repo, cfg.hub_file, cfg.hub_revision) is not None:
        return f"{cfg.hub_repo}/{cfg.hub_file} in the HF cache"
    if hub_reachable(cfg.hub_repo, cfg.hub_file, cfg.hub_revision):
        return f"{cfg.hub_repo}/{cfg.hub_file} from the hub"
    return None


def _encoder_available(encoder: str) -> bool:
    if Path(encoder).expanduser().is_dir():
        return True
    if _cached(encoder, "config.json") is not None and any(_cached(encoder, f) for f in _TOKENIZER_FILES):
        return True
    return hub_reachable(encoder, "config.json")


def choose_labeler(cfg: LabelConfig, requested: str | None = None) -> Choice:
    """Resolve ``requested`` (default ``cfg.labeler``); ``auto`` -> chexbert or rules."""
    name = requested or cfg.labeler
    if name != "auto":
        choice = Choice(name, f"requested ({name})")
    else:
        source = _weights_source(cfg.chexbert)
        local = local_checkpoint(cfg.chexbert)
        if source is None:
            missing = f"checkpoint {local} does not exist and " if local is not None else ""
            offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
            choice = Choice("rules", f"auto: {missing}CheXbert weights are neither in the HF cache nor "
                                     f"reachable on the hub{offline}")
        elif not _encoder_available(cfg.chexbert.encoder):
            choice = Choice("rules", f"auto: CheXbert weights found ({source}) but the encoder "
                                     f"{cfg.chexbert.encoder} is neither a folder, cached nor reachable")
        else:
            choice = Choice("chexbert", f"auto: CheXbert weights available ({source})")
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
