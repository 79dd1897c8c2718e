"""Model folders whose bytes depend only on the model: ``save_pretrained`` stamps the installed
transformers version into ``config.json`` and ``generation_config.json``; dropping that stamp
keeps a tiny model's folder fingerprint (the ``generation.revision`` recorded in every row, see
tasks/generation/models.py) the same in every environment that builds the same weights."""

from __future__ import annotations

import json
from pathlib import Path

VERSION_KEY = "transformers_version"
STAMPED_FILES = ("config.json", "generation_config.json")


def drop_version_stamps(folder: Path) -> None:
    """Remove the transformers version from the saved configs in ``folder`` (same JSON layout)."""
    for name in STAMPED_FILES:
        path = folder / name
        if not path.exists():
            continue
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.pop(VERSION_KEY, None) is not None:
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
