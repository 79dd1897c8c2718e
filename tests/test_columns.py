"""The column-wise text helpers give exactly what the per-row Python they replace gives, on the
cases where the two could part: braces in values and templates, empty and non-ASCII text, Python's
own whitespace and case rules, JSON escapes, turns with nulls, and the original's fuse step.
Runs in ~2 s."""

from __future__ import annotations

import json
import string

import numpy as np
import orjson
import pyarrow as pa
import pytest

from radialog_instruct.schemas import PLAN
from radialog_instruct.tasks.augment.context_dropping import partial_reports
from radialog_instruct.tasks.generation.engine import Sampling
from radialog_instruct.tasks.generation.requests import RequestSettings, request_hash, request_hashes
from radialog_instruct.tasks.hashing import ranked
from radialog_instruct.tasks.instruct import base, fidelity
from radialog_instruct.tasks.instruct.base import fuse_rows
from radialog_instruct.tasks.instruct.columns import (
    append_turns,
    collapse_whitespace,
    format_rows,
    json_escape,
    lower,
    parts_of,
    render,
    render_turns,
    sample_id_hex,
    strip,
    turns,
)
from radialog_instruct.tasks.instruct.fidelity import condition_name, findings_listing, fuse_text
from radialog_instruct.tasks.instruct.nle import joined_names
from radialog_instruct.tasks.quality.audit import before_text, before_texts
from radialog_instruct.tasks.storage.exports import Turns, records, task_code
from radialog_instruct.tasks.text.conversation import load_conversation
from radialog_instruct.tasks.text.sentences import join_names, split_sentences

#: values that trip naive string handling
TRICKY = ["", "plain text", "braces {findings} and {{doubled}}", "a stray { brace", "end }", "Ünïcödé — ß İ Σ",
          "tabs\tand\nnew lines\r\n", 'quotes " and back\\slash', "control \x00\x01\x1f\x7f chars",
          "\u3000ideographic\u3000space\xa0nbsp\x1c\x1d", "😀 emoji", "  padded  "]


def arr(values: list[str | None]) -> pa.Array:
    return pa.array(values, pa.string())


def test_format_rows_equals_str_format():
    template = "Q: {question} ({options}) {{literal}} {question}"
    out = format_rows(template, {"question": arr(TRICKY), "options": "yes, no"}, len(TRICKY))
    assert out.to_pylist() == [template.format(question=t, options="yes, no") for t in TRICKY]


@pytest.mark.parametrize("template", ["{x!r}", "{x:>12}", "{x[0]}", "no fields"])
def test_format_rows_with_specs_and_without_fields(template):
    values = [t for t in TRICKY if t]
    assert format_rows(template, {"x": arr(values)}, len(values)).to_pylist() == [template.format(x=v) for v in values]


def test_format_rows_missing_slot_raises_like_str_format():
    with pytest.raises(KeyError):
        format_rows("{missing}", {"x": arr(["a"])}, 1)


def test_render_draws_each_row_its_own_variant():
    texts = ["A {x}.", "B: {x}!", "{{C}} {x}"]
    rng = np.random.default_rng(0)
    choice = rng.integers(0, 3, 200)
    values = [TRICKY[i % len(TRICKY)] for i in range(200)]
    out = render(texts, choice, x=arr(values))
    assert out.to_pylist() == [texts[c].format(x=v) for c, v in zip(choice, values)]
    assert render(texts, np.zeros(0, dtype=np.int64), x=arr([])).to_pylist() == []


def test_python_string_semantics():
    values = [*TRICKY, None]
    assert lower(arr(values)).to_pylist() == [None if v is None else v.lower() for v in values]
    assert strip(arr(values)).to_pylist() == [None if v is None else v.strip() for v in values]
    assert collapse_whitespace(arr(values)).to_pylist() == [None if v is None else " ".join(v.split()) for v in values]
    listing = ["Cardiomegaly, Edema ", "", None, " Pleural Other"]
    for original in (True, False):
        assert base.findings_listing(arr(listing), original=original).to_pylist() == [
            fidelity.findings_listing(v, original=original) for v in listing]


def test_json_escape_equals_json_and_orjson():
    values = [*TRICKY, "".join(chr(c) for c in range(0x20)) + '"\\/']
    expected = [orjson.dumps(v).decode()[1:-1] for v in values]
    assert expected == [json.dumps(v, ensure_ascii=False)[1:-1] for v in values]
    assert json_escape(arr(values)).to_pylist() == expected


def test_sample_id_hex():
    hashes = np.array([0, 1, 0xFFFFFFFFFFFFFFFF, 0x0123456789ABCDEF], dtype=np.uint64)
    assert sample_id_hex(hashes).to_pylist() == [f"{h:016x}" for h in hashes.tolist()]


def conversations(n: int, seed: int = 1) -> list[list[dict[str, str]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        k = int(rng.integers(0, 5))
        out.append([{"role": "user" if j % 2 == 0 else "assistant", "content": TRICKY[(i + j) % len(TRICKY)]}
                    for j in range(k)])
    return out


def test_append_turns_equals_list_concatenation():
    histories = conversations(60)
    questions = [TRICKY[i % len(TRICKY)] for i in range(60)]
    answers = [None if i % 3 == 0 else f"answer {i}" for i in range(60)]
    column = pa.array(histories, pa.list_(PLAN.field("history").type.value_type))
    out = append_turns(column, ("user", arr(questions)), ("assistant", arr(answers)))
    assert out.to_pylist() == [h + [{"role": "user", "content": q}] + ([] if a is None else
                                                                       [{"role": "assistant", "content": a}])
                               for h, q, a in zip(histories, questions, answers)]
    order = np.random.default_rng(4).permutation(60)  # rows reordered in the same take
    reordered = append_turns(column, ("assistant", arr([answers[i] for i in order])), order=order)
    assert reordered.to_pylist() == [histories[i] + ([] if answers[i] is None else
                                                     [{"role": "assistant", "content": answers[i]}]) for i in order]
    empty = turns(np.zeros(2, dtype=np.int64), arr([]), arr([]))  # one row without turns
    assert append_turns(empty, ("user", arr(["q"]))).to_pylist() == [[{"role": "user", "content": "q"}]]


@pytest.mark.parametrize("drop_last", [False, True])
def test_render_turns_equals_conversation_render(drop_last):
    conv = load_conversation()
    rows = conversations(80, seed=2)
    column = pa.array(rows, pa.list_(PLAN.field("history").type.value_type))
    expected = [conv.render(r[:-1] if drop_last else r) for r in rows]
    assert render_turns(*parts_of(column), conv, drop_last=drop_last).to_pylist() == expected


def test_joined_names_equals_join_names():
    lists = [[], ["Edema"], ["Edema", "Pleural Other"], ["Atelectasis", "Edema", "Pneumonia", "Pleural Other"]]
    for original in (True, False):
        expected = [join_names([condition_name(d, original=original) for d in names]) for names in lists]
        assert joined_names(pa.array(lists, pa.list_(pa.string())), original).to_pylist() == expected


def test_partial_reports_rank_each_rows_sentences():
    reports = ["One. Two is here. Three is there. Four. Five ends.", "Single sentence.", "", None,
               "Heart size is normal. No effusion. Lungs are clear."]
    keys = [f"k{i}" for i in range(len(reports))]
    expected = []
    for key, report in zip(keys, reports):  # the per-row algorithm
        sentences = split_sentences(report)
        order = ranked(5, "context:partial", [f"{key}#{i}" for i in range(len(sentences))])
        kept = sorted(int(i) for i in order[:-(-len(sentences) // 2)])
        expected.append(" ".join(sentences[i] for i in kept))
    assert partial_reports(5, keys, reports).to_pylist() == expected


def test_fuse_rows_equals_fuse_text_per_row():
    rg = "Image information: <IMG>. Predicted Findings: {findings}. Write the findings."
    cases = [("Cardiomegaly", "Plain report.", "Is there {findings}?"), ("", "A {stray brace report.", "Q?"),
             ("Edema", "Report with {findings} inside.", "List {{them}}."), ("Edema", "Plain.", "Odd } question")]
    rows = []
    for i, (structured, report, question) in enumerate(cases):
        history = [{"role": "user", "content": rg}, {"role": "assistant", "content": report}]
        rows.append({**{f.name: None for f in PLAN}, "sample_id": f"{i:016x}", "split": "train", "task": "nle",
                     "source": "mimic-cxr", "dicom_id": f"d{i}", "image_path": "p", "structured_findings": structured,
                     "history": history, "instruction": question, "output": "answer", "context_mode": "full",
                     "template_id": "t", "is_pseudo_label": False, "sample_key": f"k{i}",
                     "messages": history + [{"role": "user", "content": question},
                                            {"role": "assistant", "content": "answer"}]})
    fused, dropped = fuse_rows(pa.Table.from_pylist(rows, schema=PLAN))
    expected = []
    for row in rows:
        listing = findings_listing(row["structured_findings"], original=True)
        texts = [fuse_text(t["content"], listing) for t in row["history"]] + [fuse_text(row["instruction"], listing)]
        if all(t is not None for t in texts):
            history = [{"role": t["role"], "content": c} for t, c in zip(row["history"], texts)]
            expected.append({"history": history, "instruction": texts[-1],
                             "messages": history + [{"role": "user", "content": texts[-1]},
                                                    {"role": "assistant", "content": "answer"}]})
    assert dropped == len(rows) - len(expected) == 2
    assert fused.select(["history", "instruction", "messages"]).to_pylist() == expected


def test_export_records_equal_orjson_of_the_records():
    conv = load_conversation()
    rows = conversations(40, seed=3)
    rows[0] = [{"role": "user", "content": conv.image_prefix + 'Question "quoted"\n?'},
               {"role": "assistant", "content": "answer\t1"}]
    table = pa.table({
        "sample_id": [f"{i:016x}" for i in range(40)], "task": ["findings_qa" if i % 2 else "nle" for i in range(40)],
        "task_mode": [["complete", "binary", None][i % 3] for i in range(40)],
        "dicom_id": [f"dicom-{TRICKY[i % len(TRICKY)]}" for i in range(40)], "image_path": ["files/x.jpg"] * 40,
        "messages": pa.array(rows, pa.list_(PLAN.field("history").type.value_type)),
        "output": [None if i == 5 else TRICKY[i % len(TRICKY)] for i in range(40)]})
    llava, flat = [], []
    for row in table.to_pylist():
        turns_ = []
        for i, msg in enumerate(row["messages"]):
            value = msg["content"]
            if i == 0 and value.startswith(conv.image_prefix):
                value = "<image>. " + value[len(conv.image_prefix):]
            turns_.append({"from": "human" if msg["role"] == "user" else "gpt", "value": value})
        llava.append(orjson.dumps({"id": row["dicom_id"], "image": row["image_path"], "conversations": turns_,
                                   "task_type": task_code(row["task"], row["task_mode"])}).decode())
        flat.append(orjson.dumps({"instruction": conv.render(row["messages"][:-1]), "input": "",
                                  "output": row["output"], "dicom": row["dicom_id"]}).decode())
    parts = Turns.of(table)
    assert records("llava", table, conv, parts).to_pylist() == llava
    assert records("flat", table, conv, parts).to_pylist() == flat


def test_request_hashes_column_wise_equal_the_recipe_per_row():
    settings = RequestSettings(model="m", revision="r", sampling=Sampling(16), seed=3)
    conv = load_conversation()
    prompts = [[{"role": "user", "content": t}] for t in TRICKY if t] + [
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": 'a "b"'}, {"role": "user", "content": "c"}]]
    table = pa.table({"sample_id": [str(i) for i in range(len(prompts) + 1)],
                      "template_version": ["1"] * len(prompts) + [None],
                      "gen_messages": pa.array(prompts + [None], pa.list_(PLAN.field("history").type.value_type))})
    assert request_hashes(table, settings) == [request_hash(settings, conv.render(p), "1") for p in prompts] + [None]


def test_fixture_values_cover_the_python_rules():
    """The edge values really differ between Arrow's ASCII rules and Python's."""
    assert any(v.lower() != v.lower().encode("ascii", "ignore").decode() for v in TRICKY if not v.isascii())
    assert any(v.strip() != v.strip(string.whitespace) for v in TRICKY)


def test_before_texts_equal_before_text():
    rows = [*conversations(50, seed=5), [], [{"role": "assistant", "content": "only an answer"}], None]
    column = pa.array(rows, pa.list_(PLAN.field("history").type.value_type))
    assert before_texts(column).to_pylist() == [before_text(r) for r in rows]
