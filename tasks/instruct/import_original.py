"""Import the original RaDialog prompts from a checkout of ChantalMP/RaDialog, for a faithful v1
reproduction (``plan.templates_dir``; README, "Differences from the original").

Read (paths relative to the checkout; the Python files are parsed with :mod:`ast`, never imported
or run):

* ``data/instruct_prompts/<TASK>_prompts.csv`` for EL, SU, RQA, CPaQA, CPbQA, RE, CO_add, CO_rem and
  CO_both: one column ``instruction``, placeholders ``<X>`` (a condition), ``<add>`` and ``<rem>``;
* ``data/create_data.py``: the conversation built by ``create_conv()`` (system prompt, roles and the
  two separators of the "TWO" style) and the report-generation prompt's key, the default
  ``prompt_type`` of ``fuse_instruct_dataset()``;
* ``vicuna_prompts.json``: that prompt: the image slot (``<IMG>`` tokens), then ``{findings}``;
* ``data/instruct_tasks.py``: ``create_conv()`` again (it must be the same conversation), the
  generator turn of ``create_direct_task_data()`` (a concatenation of text, the report and the
  instruction) and, in ``create_correction_task_data()``, the generator's request turn and its fixed
  prompt (a start, then one clause per list of false positives ``fp`` and false negatives ``fn``).

Written to ``out``: ``conversation.yaml``; for report generation, findings QA, region QA, easy
language, summarization, correction and explanation the packaged template with the original
strings, verbatim, every variant marked ``source: original``, version
``radialog-original-<digest>``; and ``origin.json`` (the files read with their sha256). The digest
covers the imported strings, so another checkout gives another version and new generation cache
keys. Impression generation, Rad-ReStruct QA and view classification, for which the original has no
prompts, keep the packaged templates. The original region-QA prompts carry no region: one is
inferred from keywords (heart and mediastinum, lungs, pleura, bones, devices), else ``any`` (a
region of all 13 findings, added to the imported file), for the audit only.
Every missing piece is an :class:`InputError` naming the file and what was expected.
"""

from __future__ import annotations

import ast
import csv
import json
import re
from collections.abc import Iterator
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from ..errors import InputError
from ..io import atomic_path, read_json, sha256_file, sha256_text, write_json, write_text
from ..labeling.conditions import FINDINGS
from ..text.conversation import TEMPLATE_PACKAGE

PROMPTS_DIR = "data/instruct_prompts"
CREATE_DATA = "data/create_data.py"
INSTRUCT_TASKS = "data/instruct_tasks.py"
VICUNA_PROMPTS = "vicuna_prompts.json"
ORIGIN = "origin.json"
IMAGE_TOKEN = "<IMG>"

#: original prompt list (``<stem>_prompts.csv``) -> (task, mode)
CSV_LISTS = {
    "EL": ("easy_language", "default"), "SU": ("summarization", "default"), "RQA": ("region_qa", "default"),
    "CPaQA": ("findings_qa", "complete"), "CPbQA": ("findings_qa", "binary"), "RE": ("nle", "default"),
    "CO_add": ("correction", "add"), "CO_rem": ("correction", "remove"), "CO_both": ("correction", "both"),
}
PLACEHOLDERS = {"findings_qa": {"<X>": "{condition}"}, "nle": {"<X>": "{conditions}"},
                "correction": {"<add>": "{add}", "<rem>": "{remove}"}}
#: replay tasks whose generator prompt is ``create_direct_task_data``'s turn
DIRECT_TASKS = ("easy_language", "summarization", "region_qa")
#: names in the original's generator turn -> placeholders of the templates' ``generation.prompt``
DIRECT_SLOTS = {"text_target": "report", "prompt": "instruction"}
#: list variable of the original's correction clauses -> the clause it fills
CORRECTION_CLAUSES = {"fp": "remove", "fn": "add"}
REGION_WORDS = (("heart", r"heart|cardiac|cardio|mediastin|mediatin"), ("lungs", r"lung|pulmonary"),
                ("pleura", r"pleura"), ("bones", r"bone|osseous|fracture|rib|skelet"),
                ("devices", r"device|tube|line|catheter"))
ANY_REGION = "any"


# --- the prompt lists --------------------------------------------------------------------------

def read_instructions(path: Path) -> list[str]:
    """The list as the original reads it (``pd.read_csv(path)["instruction"]``), texts unchanged."""
    expected = "a CSV with a header row 'instruction' and one prompt per row"
    if not path.is_file():
        raise InputError(path, "file not found", expected=expected)
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if "instruction" not in (reader.fieldnames or []):
                raise InputError(path, "no 'instruction' column", expected=expected)
            texts = []
            for row in reader:
                text = row["instruction"]
                if not text or not text.strip():
                    raise InputError(path, "empty instruction", record=f"line {reader.line_num}", expected=expected)
                texts.append(text)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(path, f"not a readable CSV ({err})", expected=expected) from None
    if not texts:
        raise InputError(path, "no prompts", expected=expected)
    return texts


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


def template_text(text: str, task: str) -> str:
    """An original prompt as a template variant: braces doubled, ``<X>``/``<add>``/``<rem>`` as fields."""
    text = _escape(text)
    for old, new in PLACEHOLDERS.get(task, {}).items():
        text = text.replace(old, new)
    return text


def region_of(text: str) -> str:
    lowered = text.lower()
    for region, pattern in REGION_WORDS:
        if re.search(pattern, lowered):
            return region
    return ANY_REGION


# --- strings in the original Python code -------------------------------------------------------

def parse_python(path: Path) -> ast.Module:
    if not path.is_file():
        raise InputError(path, "file not found", expected="the RaDialog source file (it is parsed, not run)")
    try:
        return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError) as err:
        raise InputError(path, f"not parseable Python ({err})") from None


def function(module: ast.Module, name: str, path: Path) -> ast.FunctionDef:
    for node in module.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            return node
    raise InputError(path, f"no function {name}()", expected=f"the original's {name}() at the top level")


def in_order(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes under ``node`` in source order."""
    nodes = [n for n in ast.walk(node) if hasattr(n, "lineno")]
    yield from sorted(nodes, key=lambda n: (n.lineno, n.col_offset))


def _callee(call: ast.Call) -> str | None:
    return call.func.id if isinstance(call.func, ast.Name) else \
        call.func.attr if isinstance(call.func, ast.Attribute) else None


def _string(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def conversation_of(module: ast.Module, path: Path) -> dict[str, Any]:
    """system, roles, sep, sep2 of the ``Conversation(...)`` that ``create_conv()`` returns."""
    expected = "create_conv() returning Conversation(system=..., roles=[...], sep=..., sep2=..., " \
               "sep_style=SeparatorStyle.TWO) with literal strings"
    fn = function(module, "create_conv", path)
    call = next((n for n in in_order(fn) if isinstance(n, ast.Call) and _callee(n) == "Conversation"), None)
    if call is None:
        raise InputError(path, "create_conv() builds no Conversation", expected=expected)
    kw = {k.arg: k.value for k in call.keywords}
    style = kw.get("sep_style")
    if not (isinstance(style, ast.Attribute) and style.attr == "TWO"):
        raise InputError(path, "create_conv(): the separator style is not TWO", expected=expected)
    try:
        values = {k: ast.literal_eval(kw[k]) for k in ("system", "roles", "sep", "sep2")}
    except (KeyError, ValueError):
        raise InputError(path, "create_conv(): system, roles, sep or sep2 missing or not literal",
                         expected=expected) from None
    roles = values["roles"]
    if not all(isinstance(values[k], str) for k in ("system", "sep", "sep2")) or not (
            isinstance(roles, (list, tuple)) and len(roles) == 2 and all(isinstance(r, str) for r in roles)):
        raise InputError(path, "create_conv(): unexpected value types", expected=expected)
    return {"system": values["system"], "roles": {"user": roles[0], "assistant": roles[1]},
            "sep": values["sep"], "sep2": values["sep2"]}


def report_prompt_key(module: ast.Module, path: Path) -> str:
    """The default ``prompt_type`` of ``fuse_instruct_dataset()`` (the key in vicuna_prompts.json)."""
    fn = function(module, "fuse_instruct_dataset", path)
    names = [a.arg for a in fn.args.args]
    defaults = dict(zip(names[len(names) - len(fn.args.defaults):], fn.args.defaults))
    key = _string(defaults.get("prompt_type"))
    if key is None:
        raise InputError(path, "fuse_instruct_dataset() has no string default for prompt_type",
                         expected="the key of the report-generation prompt in vicuna_prompts.json")
    return key


def report_generation_prompt(path: Path, key: str) -> tuple[str, str]:
    """(image slot, rest) of the report-generation prompt: the slot is the text up to the run of
    ``<IMG>`` tokens and the punctuation after it; the rest holds ``{findings}``."""
    expected = f"a JSON object whose {key!r} (create_data.py's prompt_type) is the report-generation prompt: " \
               f"an image slot of {IMAGE_TOKEN} tokens, then {{findings}}"
    if not path.is_file():
        raise InputError(path, "file not found", expected=expected)
    try:
        prompts = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, f"not valid JSON ({err})", expected=expected) from None
    text = prompts.get(key) if isinstance(prompts, dict) else None
    if not isinstance(text, str):
        raise InputError(path, f"no prompt {key!r}", expected=expected)
    slot = re.match(rf"(.*?(?:{re.escape(IMAGE_TOKEN)})+[^\w{{]*)", text, re.S)
    if slot is None:
        raise InputError(path, f"prompt {key!r} has no image slot", expected=expected)
    rest = text[slot.end():]
    if "{findings}" not in rest:
        raise InputError(path, f"prompt {key!r} has no {{findings}} after the image slot", expected=expected)
    return slot.group(1), rest


def _pieces(node: ast.AST) -> list[ast.AST]:
    """The operands of a chain of ``+``."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _pieces(node.left) + _pieces(node.right)
    return [node]


def direct_generation_prompt(module: ast.Module, path: Path) -> str:
    """``create_direct_task_data``'s generator turn, e.g. ``Report: {report}\\n{instruction}``."""
    expected = "create_direct_task_data() appending a user turn made of literal text, text_target (the report) " \
               "and prompt (the instruction) joined with +"
    fn = function(module, "create_direct_task_data", path)
    for node in in_order(fn):
        if isinstance(node, ast.Call) and _callee(node) == "append_message" and len(node.args) == 2 \
                and isinstance(node.args[1], ast.BinOp):
            out = []
            for piece in _pieces(node.args[1]):
                if _string(piece) is not None:
                    out.append(_escape(_string(piece)))
                elif isinstance(piece, ast.Name) and piece.id in DIRECT_SLOTS:
                    out.append("{" + DIRECT_SLOTS[piece.id] + "}")
                else:
                    raise InputError(path, f"create_direct_task_data(): unexpected part of the generator turn "
                                           f"(line {piece.lineno})", expected=expected)
            prompt = "".join(out)
            if "{report}" not in prompt or "{instruction}" not in prompt:
                raise InputError(path, "create_direct_task_data(): the generator turn lacks the report or the "
                                       "instruction", expected=expected)
            return prompt
    raise InputError(path, "create_direct_task_data(): no generator turn found", expected=expected)


def correction_generation(module: ast.Module, path: Path) -> dict[str, str]:
    """The correction generator's request turn and fixed prompt (``generation`` of correction.yaml)."""
    expected = "create_correction_task_data() with a literal request turn, fixed_corr_prompt = \"...\" and " \
               "fixed_corr_prompt += f\"...{fp}...\" / f\"...{fn}...\" clauses"
    fn = function(module, "create_correction_task_data", path)
    nodes = list(in_order(fn))
    request = next((_string(n.args[1]) for n in nodes if isinstance(n, ast.Call) and _callee(n) == "append_message"
                    and len(n.args) == 2 and _string(n.args[1]) is not None), None)

    def assigns(node: ast.AST) -> bool:
        return isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "fixed_corr_prompt"
                                                    for t in node.targets)
    start = next((_string(n.value) for n in nodes if assigns(n) and _string(n.value) is not None), None)
    clauses: dict[str, str] = {}
    for node in nodes:
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name) \
                and node.target.id == "fixed_corr_prompt" and isinstance(node.value, ast.JoinedStr):
            text, kind = [], None
            for part in node.value.values:
                if _string(part) is not None:
                    text.append(_escape(_string(part)))
                elif isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name) \
                        and part.value.id in CORRECTION_CLAUSES and part.conversion == -1 and part.format_spec is None:
                    kind = CORRECTION_CLAUSES[part.value.id]
                    text.append("{" + kind + "}")
                else:
                    raise InputError(path, f"create_correction_task_data(): unexpected clause (line {node.lineno})",
                                     expected=expected)
            if kind is None or kind in clauses:
                raise InputError(path, f"create_correction_task_data(): clause on line {node.lineno} names no "
                                       "new list", expected=expected)
            clauses[kind] = "".join(text)
    if request is None or start is None or set(clauses) != set(CORRECTION_CLAUSES.values()):
        raise InputError(path, "create_correction_task_data(): request turn, fixed prompt or its clauses not found",
                         expected=expected)
    return {"request": request, "prompt": _escape(start) + "".join(f"{{{k}_clause}}" for k in clauses),
            **{f"{k}_clause": v for k, v in clauses.items()}}


# --- the import ----------------------------------------------------------------------------------

def read_original(checkout: Path) -> dict[str, Any]:
    """Everything the import takes from the checkout (raises on the first missing piece)."""
    if not checkout.is_dir():
        raise InputError(checkout, "folder not found", expected="a checkout of ChantalMP/RaDialog")
    lists = {stem: read_instructions(checkout / PROMPTS_DIR / f"{stem}_prompts.csv") for stem in CSV_LISTS}
    create_data, instruct_tasks = checkout / CREATE_DATA, checkout / INSTRUCT_TASKS
    create_module = parse_python(create_data)
    conversation = conversation_of(create_module, create_data)
    tasks_module = parse_python(instruct_tasks)
    if conversation_of(tasks_module, instruct_tasks) != conversation:
        raise InputError(instruct_tasks, "create_conv() differs from the one in " + CREATE_DATA,
                         expected="one conversation for generation and records, as in the original")
    key = report_prompt_key(create_module, create_data)
    image_prefix, report_prompt = report_generation_prompt(checkout / VICUNA_PROMPTS, key)
    return {"lists": lists, "conversation": {**conversation, "image_prefix": image_prefix, "image_token": IMAGE_TOKEN},
            "report_prompt_key": key, "report_prompt": report_prompt,
            "direct_prompt": direct_generation_prompt(tasks_module, instruct_tasks),
            "correction": correction_generation(tasks_module, instruct_tasks)}


def source_files() -> list[str]:
    return [f"{PROMPTS_DIR}/{stem}_prompts.csv" for stem in CSV_LISTS] + [CREATE_DATA, INSTRUCT_TASKS, VICUNA_PROMPTS]


def _packaged(task: str) -> dict[str, Any]:
    return yaml.safe_load(files(TEMPLATE_PACKAGE).joinpath(f"{task}.yaml").read_text(encoding="utf-8"))


def build_templates(original: dict[str, Any], version: str) -> dict[str, dict[str, Any]]:
    """task -> template file content (the packaged template with the original strings)."""
    note = "Imported from a RaDialog checkout by `radialog-instruct import-prompts`; do not commit."
    templates: dict[str, dict[str, Any]] = {}

    def template(task: str) -> dict[str, Any]:
        if task not in templates:
            data = _packaged(task)
            templates[task] = {"task": task, "version": version, "kind": data["kind"], "verbatim": True,
                               "description": note,
                               **{k: v for k, v in data.items()
                                  if k not in ("task", "version", "kind", "description", "instructions", "generation")},
                               "instructions": {}}
            if "generation" in data:
                templates[task]["generation"] = dict(data["generation"])
        return templates[task]

    rg = template("report_generation")
    rg["instructions"]["default"] = [{"text": "{image_prefix}" + original["report_prompt"], "source": "original"}]
    for stem, (task, mode) in CSV_LISTS.items():
        variants = []
        for text in original["lists"][stem]:
            variant = {"text": template_text(text, task), "source": "original"}
            if task == "region_qa":
                variant["region"] = region_of(text)
            variants.append(variant)
        template(task)["instructions"][mode] = variants
        if any(v.get("region") == ANY_REGION for v in variants):
            template(task)["regions"] = {**template(task).get("regions", {}), ANY_REGION: list(FINDINGS)}
    for task in DIRECT_TASKS:
        template(task)["generation"] = {"prompt": original["direct_prompt"]}
    template("correction")["generation"] = original["correction"]
    return templates


def import_original(checkout: Path, out_dir: Path) -> dict[str, Any]:
    """Read the original prompts from ``checkout`` and write the template folder ``out_dir``."""
    checkout, out_dir = Path(checkout), Path(out_dir)
    if out_dir.resolve() == Path(str(files(TEMPLATE_PACKAGE))).resolve():
        raise InputError(out_dir, "is the packaged template folder", expected="a separate output folder")
    original = read_original(checkout)
    digest = sha256_text(json.dumps(original, sort_keys=True, ensure_ascii=False))[:12]
    version = f"radialog-original-{digest}"
    conversation = {"name": "radialog-original", "version": digest, "verbatim": True,
                    "description": "The conversation of the original create_conv(), imported by import-prompts.",
                    **original["conversation"]}
    templates = build_templates(original, version)
    origin = {"origin": "ChantalMP/RaDialog", "checkout": str(checkout.resolve()), "version": version,
              "files": {name: sha256_file(checkout / name) for name in source_files()},
              "report_prompt_key": original["report_prompt_key"],
              "variants": {f"{task}/{mode}": len(original["lists"][stem]) for stem, (task, mode) in CSV_LISTS.items()}}
    with atomic_path(out_dir, directory=True) as tmp:
        write_text(yaml.safe_dump(conversation, sort_keys=False, allow_unicode=True, width=100000),
                   tmp / "conversation.yaml")
        for task, data in templates.items():
            write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100000), tmp / f"{task}.yaml")
        write_json(origin, tmp / ORIGIN)
    return {"out": str(out_dir), "version": version, "tasks": sorted(templates), "variants": origin["variants"]}


def imported_origin(templates_dir: str | None) -> dict[str, Any] | None:
    """The ``origin.json`` of a folder written by :func:`import_original`, or None."""
    if not templates_dir or not (Path(templates_dir) / ORIGIN).is_file():
        return None
    return read_json(Path(templates_dir) / ORIGIN)
