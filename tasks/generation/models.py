"""Which model generates: its identity for the request hash and where a backend loads it from.

- A hub id (``lmsys/vicuna-7b-v1.5``) is identified by its configured ``revision`` (``"default"``
  when none is set: pin a commit to make the cache follow model updates). The commit actually
  loaded is resolved from the local Hugging Face cache after loading and recorded per row.
- A local folder is identified by a content fingerprint (the Hugging Face snapshot commit when
  the folder is one, else ``local-<hash>`` of each file's name, size, first and last MiB), so
  replacing the weights invalidates the cache while reading stays cheap for 26 GB checkpoints.
- ``demo-tiny`` is a tiny random Llama built once into ``<workdir>/models/demo-tiny`` from the
  ingested report texts (fixed seed) and then reused; its hash identity is the constant
  :data:`DEMO_KEY_REVISION`, so hashes need no model folder (the rows record the folder's
  fingerprint).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..io import read_parquet
from ..workdir import Workdir
from .config import DEMO_TINY, GenerateConfig

#: the demo model's weights do not depend on any setting
DEMO_MODEL_SEED = 0
DEMO_KEY_REVISION = f"tiny-llama-seed{DEMO_MODEL_SEED}"
DEMO_TEXT_COLUMNS = ("findings", "impression")
_FINGERPRINT_BYTES = 1 << 20
_SNAPSHOT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class ModelRef:
    #: the model as recorded in the cache and hashed: hub id, local folder as configured, demo-tiny
    name: str
    #: what a backend loads: a hub id or a local folder
    source: str
    #: the hub revision to load (None: the default branch, or a local folder)
    revision: str | None
    #: the revision part of the request hash
    key_revision: str
    #: False for random-weight models
    meaningful: bool = True

    @property
    def is_local(self) -> bool:
        return Path(self.source).is_dir()


def model_ref(cfg: GenerateConfig, wd: Workdir, *, build: bool = False) -> ModelRef:
    """The configured model's identity. Cheap: reads at most 2 MiB per file of a local folder.

    With ``build``, ``demo-tiny`` is built if it does not exist yet (the generate stage does this).
    """
    meaningful = cfg.preset.meaningful if cfg.model is None else True
    if cfg.model_id == DEMO_TINY:
        folder = wd.models / DEMO_TINY
        if build and not folder.exists():
            build_demo_model(wd)
        return ModelRef(DEMO_TINY, str(folder), None, DEMO_KEY_REVISION, meaningful=False)
    if Path(cfg.model_id).is_dir():
        return ModelRef(cfg.model_id, cfg.model_id, None, folder_fingerprint(Path(cfg.model_id)), meaningful)
    return ModelRef(cfg.model_id, cfg.model_id, cfg.revision, cfg.revision or "default", meaningful)


def build_demo_model(wd: Workdir) -> Path:
    """Build ``demo-tiny`` from the report texts of the ingested reports table."""
    from ..models.tiny_llama import build_tiny_llama

    table = read_parquet(wd.table("reports"), columns=list(DEMO_TEXT_COLUMNS))
    texts = [t for name in DEMO_TEXT_COLUMNS for t in table.column(name).to_pylist() if t]
    if not texts:
        raise InputError(wd.table("reports"), "no report text to train the demo tokenizer on")
    return build_tiny_llama(wd.models / DEMO_TINY, texts, seed=DEMO_MODEL_SEED)


def folder_fingerprint(folder: Path) -> str:
    """A cheap content identity of a model folder (see the module docstring)."""
    if _SNAPSHOT.match(folder.name) and folder.parent.name == "snapshots":
        return folder.name
    h = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")):
        size = path.stat().st_size
        h.update(f"{path.relative_to(folder).as_posix()}\0{size}\0".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(_FINGERPRINT_BYTES))
            if size > 2 * _FINGERPRINT_BYTES:
                fh.seek(-_FINGERPRINT_BYTES, 2)
            h.update(fh.read(_FINGERPRINT_BYTES))
    return "local-" + h.hexdigest()[:16]


def resolved_revision(model: ModelRef) -> str:
    """The commit a backend loaded: the local folder's fingerprint, or the hub snapshot in the local
    Hugging Face cache that ``revision`` points at ("unknown" when it cannot be found)."""
    if model.is_local:
        return folder_fingerprint(Path(model.source))
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model.source, "config.json", revision=model.revision)
    if isinstance(found, str) and _SNAPSHOT.match(Path(found).parent.name):
        return Path(found).parent.name
    return "unknown"
