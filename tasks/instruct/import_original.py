"""Import the original RaDialog instruction lists for a faithful reproduction.

A checkout of ChantalMP/RaDialog holds ``data/instruct_prompts/<TASK>.csv`` files (one column
``instruction``) with the placeholders ``<X>`` (a condition), ``<add>`` and ``<rem>``. This writes a
folder of template YAMLs (for ``plan.templates_dir``): each packaged template with its instruction
list replaced by the original one, placeholders translated, and the version set to
``radialog-original-<sha of the CSV files>``. Tasks the original has no list for (report and
impression generation, Rad-ReStruct QA, view classification) keep the packaged templates. The
original region-QA prompts carry no region; a region is inferred from keywords (heart, lung,
pleura, bone, device), else ``any``.
"""

from __future__ import annotations

import csv
import hashlib
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..io import write_text
from ..text.conversation import TEMPLATE_PACKAGE

#: original CSV file stem -> (task, mode)
ORIGINAL_FILES = {
    "EL": ("easy_language", "default"), "SU": ("summarization", "default"), "RQA": ("region_qa", "default"),
    "CPaQA": ("findings_qa", "complete"), "CPbQA": ("findings_qa", "binary"), "RE": ("nle", "default"),
    "CO_add": ("correction", "add"), "CO_rem": ("correction", "remove"), "CO_both": ("correction", "both"),
}
PLACEHOLDERS = {"findings_qa": {"<X>": "{condition}"}, "nle": {"<X>": "{conditions}"},
                "correction": {"<add>": "{add}", "<rem>": "{remove}"}}
REGION_WORDS = (("heart", r"heart|cardiac|cardio"), ("lungs", r"lung|pulmonary"), ("pleura", r"pleura"),
                ("bones", r"bone|osseous|fracture|rib|skelet"), ("devices", r"device|tube|line|catheter"))


def read_instructions(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable CSV ({err})", expected="a CSV with a column 'instruction'") from None
    if not rows or "instruction" not in rows[0]:
        raise InputError(path, "no 'instruction' column", expected="a CSV with a column 'instruction'")
    texts = [" ".join((row["instruction"] or "").split()) for row in rows]
    return [t for t in texts if t]


def translate(text: str, task: str) -> str:
    text = text.replace("{", "{{").replace("}", "}}")
    for old, new in PLACEHOLDERS.get(task, {}).items():
        text = text.replace(old, new)
    return text


def region_of(text: str) -> str:
    lowered = text.lower()
    for region, pattern in REGION_WORDS:
        if re.search(pattern, lowered):
            return region
    return "any"


def import_original(checkout: Path, out_dir: Path) -> dict[str, Any]:
    folder = checkout / "data" / "instruct_prompts"
    if not folder.is_dir():
        raise InputError(folder, "folder not found", expected="a RaDialog checkout with data/instruct_prompts/*.csv")
    found = {stem: folder / f"{stem}.csv" for stem in ORIGINAL_FILES if (folder / f"{stem}.csv").exists()}
    if not found:
        raise InputError(folder, "none of the original instruction files",
                         expected=", ".join(f"{s}.csv" for s in ORIGINAL_FILES))
    digest = hashlib.sha256(b"".join(found[s].read_bytes() for s in sorted(found))).hexdigest()[:12]
    templates: dict[str, dict[str, Any]] = {}
    for stem, path in sorted(found.items()):
        task, mode = ORIGINAL_FILES[stem]
        if task not in templates:
            packaged = files(TEMPLATE_PACKAGE).joinpath(f"{task}.yaml").read_text(encoding="utf-8")
            templates[task] = yaml.safe_load(packaged)
            templates[task]["version"] = f"radialog-original-{digest}"
        texts = [translate(t, task) for t in read_instructions(path)]
        if task == "region_qa":
            templates[task]["instructions"][mode] = [{"text": t, "region": region_of(t)} for t in texts]
        else:
            templates[task]["instructions"][mode] = texts
    for task, data in templates.items():
        write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), out_dir / f"{task}.yaml")
    return {"out": str(out_dir), "version": f"radialog-original-{digest}",
            "variants": {f"{ORIGINAL_FILES[s][0]}/{ORIGINAL_FILES[s][1]}": len(read_instructions(p))
                         for s, p in sorted(found.items())}}
