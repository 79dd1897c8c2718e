"""README, params.yaml and the template YAMLs against the code and the papers: every setting that
README's "Differences from the original" names exists and takes the value it names; the generator
presets are documented by the names the code knows; the variants marked as the papers' prompts are
printed in the papers (../shared/papers), and no unmarked one is."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from radialog_instruct.flows.cli import app
from radialog_instruct.tasks.config import load_params, section
from radialog_instruct.tasks.generation.config import PRESETS
from radialog_instruct.tasks.generation.config import load_config as generate_config
from radialog_instruct.tasks.instruct.import_original import import_original
from radialog_instruct.tasks.instruct.plan import load_config as plan_config
from radialog_instruct.tasks.labeling.settings import LabelConfig
from radialog_instruct.tasks.sources.ingest import load_config as sources_config
from radialog_instruct.tasks.storage.assemble import load_config as assemble_config

from reference import REPO, shared_data

README = (REPO / "README.md").read_text(encoding="utf-8")
LOADERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "plan": plan_config, "assemble": assemble_config, "generate": generate_config,
    "label": lambda params: section(LabelConfig, params, "label"), "sources": sources_config,
}
SETTING = re.compile(r"^([a-z_]+(?:\.[a-z_]+)+): (.+)$")


def section_text(heading: str) -> str:
    start = README.index(heading)
    following = re.search(r"^#{1,3} ", README[start + len(heading):], re.M)
    return README[start:start + len(heading) + following.start()] if following else README[start:]


def table_rows(text: str) -> list[list[str]]:
    rows = [line for line in text.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in rows]
    return [c for c in cells if not set(c[0]) <= {"-"} and c[0] not in ("#", "what")]


DIFFERENCES = table_rows(section_text("## Differences from the original"))
RESTORES = sorted({item for row in DIFFERENCES for item in re.findall(r"`([^`]+)`", row[-1])})


def test_the_differences_table_is_complete():
    assert len(DIFFERENCES) >= 25
    numbered = [row for row in DIFFERENCES if row[0].isdigit()]
    assert [int(row[0]) for row in numbered] == list(range(1, len(numbered) + 1))
    assert all(len(row) == 6 and all(row) for row in numbered)
    assert {"import-prompts", "plan.fidelity: original", "plan.view_classification_context: context_dropping",
            "assemble.exclude_failed_audit: false", "plan.splits: [train]"} <= set(RESTORES)


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("docs") / "original"
    import_original(REPO / "tests" / "data" / "radialog-checkout", out)
    return out


@pytest.mark.parametrize("item", RESTORES)
def test_every_named_setting_exists_and_takes_its_value(item: str, imported: Path):
    commands = {c.name for c in app.registered_commands}
    if item in commands:
        return
    match = SETTING.match(item)
    assert match, f"README names {item!r}: neither a command nor 'section.key: value'"
    key, value = match.groups()
    params = load_params(demo=True, overrides=["plan.preset=radialog-v1", f"plan.templates_dir={imported}"])
    node = params
    for part in key.split(".")[:-1]:
        node = node[part]
    assert key.split(".")[-1] in node, f"{key} is not in params.yaml"
    if value.startswith("<"):  # a placeholder for the user's own value
        return
    params = load_params(demo=True, overrides=["plan.preset=radialog-v1", f"plan.templates_dir={imported}",
                                               f"{key}={value}"])
    loaded = LOADERS[key.split(".")[0]](params)
    for part in key.split(".")[1:]:
        loaded = getattr(loaded, part)
    expected = load_params(overrides=[f"{key}={value}"])
    for part in key.split("."):
        expected = expected[part]
    assert loaded == expected or list(loaded) == expected


def test_generator_presets_are_documented_by_their_names():
    documented = set(re.findall(r"`([a-z0-9.-]+)`", section_text("### Pseudo ground truth")))
    assert set(PRESETS) <= documented
    comment = (REPO / "params.yaml").read_text(encoding="utf-8").split("\ngenerate:\n", 1)[1].split("model_preset:")[0]
    assert all(name in comment for name in PRESETS)
    assert "(paper)" not in comment and "the paper;" not in section_text("### Pseudo ground truth")


def _normalised(text: str) -> str:
    """Placeholders of either side as one mark, whitespace dropped (the papers' text is PDF-extracted)."""
    text = re.sub(r"\{[a-z_]+\}|<[A-Z][A-Z_\-\\]*>", "\u00a7", text)
    return re.sub(r"\s+", "", text)


def _in_papers(text: str, papers: str) -> bool:
    pattern = ".{1,120}?".join(re.escape(part) for part in _normalised(text).split("\u00a7"))
    return re.search(pattern, papers) is not None


def test_template_variants_marked_as_the_papers_are_printed_in_them():
    folder = shared_data().parent / "papers"
    if not folder.is_dir():
        pytest.skip(f"the papers are not at {folder}")
    papers = _normalised(" ".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.txt"))))
    marked = 0
    for path in sorted((REPO / "prompt_templates").glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if "instructions" not in data:
            continue
        per_task = 0
        for mode, variants in data["instructions"].items():
            sources = [v.get("source") if isinstance(v, dict) else None for v in variants]
            assert set(sources) <= {None, "paper", "paper-adapted"}, (path.name, mode)
            n = len(sources) - sources.count(None)
            assert all(sources[:n]) and not any(sources[n:]), f"{path.name}/{mode}: the papers' variants come first"
            for variant in variants:
                if not isinstance(variant, dict) or variant.get("source") is None:
                    text = variant if isinstance(variant, str) else variant["text"]
                    assert not _in_papers(text, papers), f"{path.name}: unmarked paper prompt {text!r}"
                    continue
                printed = variant["text"] if variant["source"] == "paper" else variant["paper"]
                assert _in_papers(printed, papers), (path.name, printed)
                if variant["source"] == "paper-adapted":
                    assert not _in_papers(variant["text"], papers), (path.name, variant["text"])
                per_task += 1
        assert 1 <= per_task <= 6, path.name
        marked += per_task
    assert marked == 30
