"""``import-prompts`` on a checkout in the real RaDialog layout (tests/data/radialog-checkout: the
layout with this project's own strings): the template folder it writes, and a one-line error for
each missing piece."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from importlib.resources import files
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from radialog_instruct.flows.cli import app
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.instruct.import_original import CSV_LISTS, import_original, imported_origin
from radialog_instruct.tasks.instruct.templates import load_templates, template_files
from radialog_instruct.tasks.text.conversation import TEMPLATE_PACKAGE, load_conversation

from reference import REPO

CHECKOUT = REPO / "tests" / "data" / "radialog-checkout"
runner = CliRunner()


def csv_texts(checkout: Path, stem: str) -> list[str]:
    with open(checkout / "data" / "instruct_prompts" / f"{stem}_prompts.csv", newline="", encoding="utf-8") as fh:
        return [row["instruction"] for row in csv.DictReader(fh)]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("imported") / "templates"
    result = runner.invoke(app, ["import-prompts", str(CHECKOUT), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "plan.templates_dir" in result.output
    return out


def test_the_folder_holds_the_conversation_and_the_templates_of_the_original_tasks(imported: Path):
    assert sorted(p.name for p in imported.iterdir()) == [
        "conversation.yaml", "correction.yaml", "easy_language.yaml", "findings_qa.yaml", "nle.yaml", "origin.json",
        "region_qa.yaml", "report_generation.yaml", "summarization.yaml"]
    origin = imported_origin(str(imported))
    for name, digest in origin["files"].items():
        assert hashlib.sha256((CHECKOUT / name).read_bytes()).hexdigest() == digest
    assert len(origin["files"]) == 12 and origin["report_prompt_key"] == "fixture_rg_prompt"
    # tasks without an original list keep the packaged templates
    used = {p.name: p for p in template_files(str(imported))}
    assert used["view_classification.yaml"].parent != imported and used["region_qa.yaml"].parent == imported


def test_the_conversation_is_create_convs(imported: Path):
    conv = load_conversation(str(imported))
    assert conv.system == ("You are a careful radiology assistant talking with a clinician. "
                           "Answer briefly and precisely.")
    assert (conv.user, conv.assistant, conv.sep, conv.sep2) == ("CLINICIAN", "ASSISTANT", " ", "</s>")
    assert conv.image_prefix == "Picture: " + "<IMG>" * 32 + ". " and conv.image_token == "<IMG>"
    assert conv.name == "radialog-original" and conv.version in load_templates("nle", str(imported)).version


def test_every_list_is_imported_verbatim_with_its_placeholders(imported: Path):
    for stem, (task, mode) in CSV_LISTS.items():
        template = load_templates(task, str(imported))
        texts = csv_texts(CHECKOUT, stem)
        variants = template.variants(mode)
        assert len(variants) == len(texts), stem
        for variant, text in zip(variants, texts):
            filled = variant.fill(condition="<X>", conditions="<X>", add="<add>", remove="<rem>")
            assert filled == text, stem
        assert template.version.startswith("radialog-original-")
    summary = load_templates("summarization", str(imported)).variants("default")
    assert summary[1].text == "Give the gist of the report  in one line."  # whitespace kept as it is
    assert [v.region for v in load_templates("region_qa", str(imported)).variants("default")] == \
        ["heart", "bones", "any"]
    regions = load_templates("region_qa", str(imported)).extra["regions"]
    assert len(regions["any"]) == 13 and regions["heart"] == ["Cardiomegaly", "Enlarged Cardiomediastinum"]
    data = yaml.safe_load((imported / "findings_qa.yaml").read_text())
    assert data["verbatim"] is True and all(v["source"] == "original" for v in data["instructions"]["binary"])


def test_report_generation_and_generator_prompts_come_from_the_code(imported: Path):
    (rg,) = load_templates("report_generation", str(imported)).variants("default")
    prompt = json.loads((CHECKOUT / "vicuna_prompts.json").read_text())["fixture_rg_prompt"]
    image = load_conversation(str(imported)).image_prefix
    assert rg.fill(image_prefix=image, findings="{findings}") == prompt
    for task in ("easy_language", "summarization", "region_qa"):
        assert load_templates(task, str(imported)).generation == {"prompt": "Findings text: {report}\n{instruction}"}
    assert load_templates("correction", str(imported)).generation == {
        "request": "Write the report for this chest film.",
        "prompt": "Rewrite the report. {remove_clause}{add_clause}",
        "remove_clause": "Leave out {remove}. ", "add_clause": "Include {add}. "}


def test_braces_in_an_original_prompt_survive_the_template_format(tmp_path: Path):
    checkout = Path(shutil.copytree(CHECKOUT, tmp_path / "checkout"))
    (checkout / "data" / "instruct_prompts" / "EL_prompts.csv").write_text(
        'instruction\n"Explain {this} simply."\n', encoding="utf-8")
    import_original(checkout, tmp_path / "out")
    (variant,) = load_templates("easy_language", str(tmp_path / "out")).variants("default")
    assert variant.fill() == "Explain {this} simply."


def test_the_packaged_folder_is_never_overwritten():
    packaged = Path(str(files(TEMPLATE_PACKAGE)))
    with pytest.raises(InputError, match="is the packaged template folder"):
        import_original(CHECKOUT, packaged)


def _remove(path: str):
    return lambda checkout: (checkout / path).unlink()


def _edit(path: str, old: str, new: str):
    def edit(checkout: Path) -> None:
        target = checkout / path
        text = target.read_text(encoding="utf-8")
        assert old in text, (path, old)
        target.write_text(text.replace(old, new), encoding="utf-8")
    return edit


MISSING = {
    **{f"{stem}_prompts.csv": (_remove(f"data/instruct_prompts/{stem}_prompts.csv"),
                               f"{stem}_prompts.csv: file not found") for stem in CSV_LISTS},
    "no instruction column": (_edit("data/instruct_prompts/SU_prompts.csv", "instruction\n", "prompt\n"),
                              "SU_prompts.csv: no 'instruction' column"),
    "vicuna_prompts.json": (_remove("vicuna_prompts.json"), "vicuna_prompts.json: file not found"),
    "report prompt key": (_edit("vicuna_prompts.json", '"fixture_rg_prompt"', '"renamed"'),
                          "vicuna_prompts.json: no prompt 'fixture_rg_prompt'"),
    "image slot": (_edit("vicuna_prompts.json", "<IMG>", "<img>"),
                   "vicuna_prompts.json: prompt 'fixture_rg_prompt' has no image slot"),
    "create_data.py": (_remove("data/create_data.py"), "create_data.py: file not found"),
    "create_conv": (_edit("data/create_data.py", "def create_conv()", "def make_conv()"),
                    "create_data.py: no function create_conv()"),
    "separator style": (_edit("data/create_data.py", "sep_style=SeparatorStyle.TWO", "sep_style=SeparatorStyle.SINGLE"),
                        "create_data.py: create_conv(): the separator style is not TWO"),
    "prompt_type default": (_edit("data/create_data.py", 'prompt_type="fixture_rg_prompt"', "prompt_type=None"),
                            "create_data.py: fuse_instruct_dataset() has no string default for prompt_type"),
    "instruct_tasks.py": (_remove("data/instruct_tasks.py"), "instruct_tasks.py: file not found"),
    "two conversations": (_edit("data/instruct_tasks.py", "Answer briefly", "Answer at length"),
                          "instruct_tasks.py: create_conv() differs from the one in data/create_data.py"),
    "generator turn": (_edit("data/instruct_tasks.py", '"Findings text: " + text_target + "\\n" + prompt',
                             '"Findings text: " + prompt'),
                       "instruct_tasks.py: create_direct_task_data(): the generator turn lacks the report"),
    "correction clause": (_edit("data/instruct_tasks.py", 'fixed_corr_prompt += f"Include {fn}. "', "pass"),
                          "instruct_tasks.py: create_correction_task_data(): request turn, fixed prompt or its "
                          "clauses not found"),
}


@pytest.mark.parametrize("case", sorted(MISSING))
def test_each_missing_piece_is_a_one_line_error_naming_the_file(case: str, tmp_path: Path):
    checkout = Path(shutil.copytree(CHECKOUT, tmp_path / "checkout"))
    damage, message = MISSING[case]
    damage(checkout)
    result = runner.invoke(app, ["import-prompts", str(checkout), "-o", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "(expected " in lines[0], lines
    assert str(checkout) in lines[0]
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_not_a_checkout(tmp_path: Path):
    with pytest.raises(InputError, match=re.escape(f"{tmp_path / 'nowhere'}: folder not found")):
        import_original(tmp_path / "nowhere", tmp_path / "out")
