"""The shards in trainers people already use, as the README's "Training" section shows them: HF
``datasets.load_dataset("parquet", ...)``, TRL's ``SFTTrainer`` on the ``messages`` column with
assistant-only loss (and on prompt/completion pairs for the last answer only), and the LLaVA JSON
export read the way LLaVA's ``train.py`` reads it.

Runtime: 20-45 s on 2 shared cores (three SFTTrainer set-ups, one 2-step training).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_trainer import sentencepiece_style_tokenizer, tiny_model, write_shards  # noqa: F401 (fixtures)

from radialog_instruct.tasks.storage.exports import export
from radialog_instruct.tasks.text.conversation import load_conversation
from radialog_instruct.tasks.workdir import Workdir
from radialog_instruct.trainer.chat_template import chat_template
from radialog_instruct.trainer.encode import IGNORE, Encoder
from radialog_instruct.trainer.model import load_tokenizer
from radialog_instruct.trainer.shards import Row, open_shards, stream_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    return write_shards(Workdir.at(tmp_path_factory.mktemp("consumers")), rows={"train": 48, "validate": 16, "test": 8})


# --- the README recipes ---------------------------------------------------------------------------

def load_splits(version_dir: Path):
    from datasets import load_dataset

    return load_dataset("parquet", data_files={"train": str(version_dir / "train" / "*.parquet"),
                                               "validation": str(version_dir / "validate" / "*.parquet")})


def sft_trainer(model: Path, train_dataset, out: Path, **settings):
    from peft import LoraConfig
    from transformers import AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.chat_template = chat_template()  # the Vicuna v1.1 text, answers marked for the loss
    args = SFTConfig(output_dir=str(out), max_length=800, per_device_train_batch_size=4, gradient_accumulation_steps=2,
                     learning_rate=3e-4, max_steps=2, logging_steps=1, save_strategy="no", report_to="none",
                     use_cpu=True, **settings)
    lora = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    return SFTTrainer(model=str(model), args=args, train_dataset=train_dataset, processing_class=tokenizer,
                      peft_config=lora)


def last_answer(example: dict) -> dict:
    """RaDialog v2's supervision in TRL: everything before the final answer is the prompt."""
    return {"prompt": example["messages"][:-1], "completion": example["messages"][-1:]}


# --- tests ----------------------------------------------------------------------------------------

def test_datasets_loads_the_splits_with_the_rows_the_trainer_streams(shards):
    data = load_splits(shards)
    manifest = json.loads((shards / "manifest.json").read_text())
    for split, name in (("train", "train"), ("validate", "validation")):
        rows = sum(entry["rows"] for rel, entry in manifest["shards"].items() if rel.startswith(f"{split}/"))
        assert data[name].num_rows == rows
        streamed = stream_rows(open_shards(shards).files(split), split, None, seed=0, purpose="t", epoch=0,
                               buffer_size=8)
        assert sorted(data[name]["sample_id"]) == sorted(row.sample_id for row in streamed)
    example = data["train"][0]
    assert example["messages"][-1] == {"role": "assistant", "content": example["output"]}


@pytest.mark.parametrize("supervise", ["all", "last"])
def test_trl_sft_trainer_supervises_the_tokens_our_trainer_supervises(shards, tiny_model, tmp_path, supervise):  # noqa: F811
    train = load_splits(shards)["train"]
    if supervise == "all":  # the messages column as it is, loss on every assistant turn
        trainer = sft_trainer(tiny_model, train, tmp_path, assistant_only_loss=True)
    else:
        trainer = sft_trainer(tiny_model, train.map(last_answer, remove_columns=train.column_names), tmp_path)
    ours = Encoder(load_tokenizer(str(tiny_model), None), load_conversation(), max_length=800, supervise=supervise)
    examples = ours.encode([Row(r["sample_id"], r["task"], r["dicom_id"], r["messages"]) for r in train])
    processed = trainer.train_dataset
    assert processed.num_rows == len(examples) == train.num_rows
    for theirs, mine in zip(processed, examples, strict=True):
        assert theirs["input_ids"] == mine.input_ids
        assert theirs["labels"] == mine.labels
    assert all(ex.n_labels for ex in examples)
    if supervise == "all":
        result = trainer.train()
        assert trainer.state.global_step == 2 and math.isfinite(result.training_loss)


def test_chat_template_and_a_sentencepiece_tokenizer_differ_only_before_the_system_prompt(
        sentencepiece_style_tokenizer):  # noqa: F811
    """Llama-style tokenizers mark a word start after <s> in running text but not after the template's
    literal <s>: the first system-prompt token differs (never supervised); every label is the same."""
    tok = sentencepiece_style_tokenizer
    tok.chat_template = chat_template()
    messages = [{"role": "user", "content": "Is there edema?"}, {"role": "assistant", "content": "yes"}]
    (mine,) = Encoder(tok, load_conversation(), max_length=512, supervise="all").encode([Row("s", "t", None, messages)])
    theirs = tok.apply_chat_template(messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids = theirs["input_ids"]
    assert len(ids) == len(mine.input_ids)
    assert [i for i, (a, b) in enumerate(zip(ids, mine.input_ids, strict=True)) if a != b] == [1]
    assert [t if m else IGNORE for t, m in zip(ids, theirs["assistant_masks"], strict=True)] == mine.labels
    prompt = tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert prompt == "<s>" + load_conversation().render(messages[:1], open_turn=True)


# --- LLaVA --------------------------------------------------------------------------------------

#: LLaVA's image token and its vicuna_v1 conversation (llava/conversation.py: conv_vicuna_v1, TWO style)
LLAVA_IMAGE = "<image>"
LLAVA_VICUNA_V1 = {"roles": ("USER", "ASSISTANT"), "sep": " ", "sep2": "</s>"}


def llava_text(value: str) -> str:
    """What LLaVA's preprocess_multimodal makes of a turn holding the image token: the token removed,
    the rest stripped, and the token put in front on a line of its own."""
    if LLAVA_IMAGE not in value:
        return value
    return f"{LLAVA_IMAGE}\n" + value.replace(LLAVA_IMAGE, "").strip()


def test_llava_export_reads_as_llava_conversations(shards, tmp_path):
    import pyarrow.parquet as pq

    conv = load_conversation()
    assert {"roles": (conv.user, conv.assistant), "sep": conv.sep, "sep2": conv.sep2} == LLAVA_VICUNA_V1
    splits = ("train", "validate")
    out = tmp_path / "llava.json"
    assert export({"llava": out}, shards, splits, workers=1) > 0
    records = json.loads(out.read_text())
    rows = [row for split in splits for path in open_shards(shards).files(split) for row in pq.read_table(path).to_pylist()]
    assert len(records) == len(rows)
    for record, row in zip(records, rows, strict=True):
        assert set(record) == {"id", "image", "conversations", "task_type"} and record["id"] == row["dicom_id"]
        assert record["image"] == row["image_path"] and isinstance(record["image"], str)  # LLaVA opens it
        turns = record["conversations"]
        assert all(set(turn) == {"from", "value"} for turn in turns)
        assert [turn["from"] for turn in turns] == ["human", "gpt"] * (len(row["messages"]) // 2)
        # one image, leading the first human turn; no trainer placeholder left
        assert sum(turn["value"].count(LLAVA_IMAGE) for turn in turns) == 1
        assert turns[0]["value"].startswith(LLAVA_IMAGE)
        assert not any(conv.image_token in turn["value"] for turn in turns)
        # after LLaVA's preprocessing, its vicuna_v1 prompt is ours with the image prefix as "<image>\n. "
        seen = [{"role": m["role"], "content": llava_text(t["value"])} for m, t in zip(row["messages"], turns, strict=True)]
        assert conv.render(seen, open_turn=False) == conv.render(row["messages"], open_turn=False).replace(
            conv.image_prefix, f"{LLAVA_IMAGE}\n. ", 1)
