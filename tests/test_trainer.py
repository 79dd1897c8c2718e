"""The LoRA trainer on a tiny random Llama and small demo-like shards (CPU, offline).

Shards are written here with the INSTRUCT_SAMPLE schema in the assemble stage's layout
(``shards/<version>/<split>/part-NNNNN.parquet`` + ``manifest.json``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from radialog_instruct.schemas.tables import INSTRUCT_SAMPLE  # noqa: E402
from radialog_instruct.tasks.errors import ConfigError, InputError  # noqa: E402
from radialog_instruct.tasks.io import sha256_file, write_json  # noqa: E402
from radialog_instruct.tasks.models.tiny_llama import build_tiny_llama  # noqa: E402
from radialog_instruct.tasks.text.conversation import (
    load_conversation,  # noqa: E402
    params_conversation,
)
from radialog_instruct.tasks.workdir import Workdir  # noqa: E402
from radialog_instruct.trainer import load_adapter, run_train, stage_spec  # noqa: E402
from radialog_instruct.trainer.encode import IGNORE, Encoder, Example, ImageSlot, Skip  # noqa: E402
from radialog_instruct.trainer.loop import Trainer  # noqa: E402
from radialog_instruct.trainer.model import add_image_token, load_tokenizer  # noqa: E402
from radialog_instruct.trainer.shards import Row, open_shards, stream_rows  # noqa: E402

VERSION = "v-test"
FINDINGS = {
    "cardiomegaly": "The heart is mildly enlarged.",
    "pleural effusion": "There is a small left pleural effusion.",
    "edema": "Mild pulmonary edema is present.",
    "pneumothorax": "A small right apical pneumothorax is seen.",
    "atelectasis": "There is bibasilar atelectasis.",
}
NORMAL = ["The lungs are clear.", "No pleural effusion or pneumothorax.", "Heart size is normal.",
          "The mediastinal contours are unremarkable."]
IMAGE_PREFIX = load_conversation().image_prefix


def demo_row(i: int, split: str, rng: random.Random) -> dict:
    """One conversation in the shape the instruct tasks produce."""
    positives = rng.sample(sorted(FINDINGS), rng.randint(0, 2))
    report = " ".join([FINDINGS[p] for p in positives] + rng.sample(NORMAL, 2))
    first = {"role": "user", "content": f"{IMAGE_PREFIX}Predicted Findings: {', '.join(positives) or 'no finding'}. "
                                        f"Write the findings section of the report for this chest X-ray."}
    turns = [first, {"role": "assistant", "content": report}]
    task = ("report_generation", "findings_qa", "summarization")[i % 3]
    if task == "findings_qa":
        asked = rng.choice(sorted(FINDINGS))
        turns += [{"role": "user", "content": f"Is there {asked}?"},
                  {"role": "assistant", "content": "yes" if asked in positives else "no"}]
    elif task == "summarization":
        turns += [{"role": "user", "content": "Summarize the report in one sentence."},
                  {"role": "assistant", "content": (", ".join(positives) or "no acute findings").capitalize() + "."}]
    return {"sample_id": f"{split}-{i:05d}", "split": split, "task": task, "source": "demo",
            "dicom_id": f"dicom-{split}-{i:05d}", "image_path": f"files/p10/s{i}.jpg", "history": turns[:-2],
            "messages": turns, "instruction": turns[-2]["content"], "output": turns[-1]["content"],
            "context_mode": "full", "template_id": f"{task}/0", "is_pseudo_label": False, "pipeline_version": "test"}


def write_shards(wd: Workdir, *, rows: dict[str, int], part_rows: int = 64, row_group: int = 16) -> Path:
    root = wd.shards(VERSION)
    rng = random.Random(7)
    entries = {}
    for split, n in rows.items():
        data = [demo_row(i, split, rng) for i in range(n)]
        for part, start in enumerate(range(0, n, part_rows)):
            rel = f"{split}/part-{part:05d}.parquet"
            (root / split).mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pylist(data[start:start + part_rows], schema=INSTRUCT_SAMPLE)
            pq.write_table(table, root / rel, compression="zstd", row_group_size=row_group)
            entries[rel] = {"sha256": sha256_file(root / rel), "rows": table.num_rows}
    write_json({"version": VERSION, "config_hash": "cfg123", "shards": entries}, root / "manifest.json")
    return root


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    rng = random.Random(0)
    conversation = load_conversation()
    texts = [conversation.render(demo_row(i, "train", rng)["messages"], open_turn=False) for i in range(300)]
    return build_tiny_llama(tmp_path_factory.mktemp("model") / "tiny", texts, seed=0)


@pytest.fixture()
def workdir(tmp_path) -> Workdir:
    wd = Workdir.at(tmp_path / "work")
    write_shards(wd, rows={"train": 192, "validate": 32, "test": 16})
    return wd


def train_params(model: Path | str, **overrides) -> dict:
    train = {"base_model": str(model), "dataset_version": VERSION, "max_length": 256, "micro_batch_size": 4,
             "grad_accum": 2, "lr": 3e-3, "warmup_steps": 2, "epochs": 3, "eval_every": 10, "save_every": 5,
             "shuffle_buffer": 64, "lora": {"r": 8, "alpha": 16, "dropout": 0.05,
                                            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]}}
    train.update(overrides)
    return {"seed": 11, "train": train}


def lora_weights(adapter: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    return load_file(adapter / "adapter_model.safetensors")


# --- encoding -----------------------------------------------------------------------------------

def labeled_runs(ex: Example) -> list[list[int]]:
    """The supervised token ids, as maximal runs of consecutive positions."""
    runs, current = [], []
    for token, label in zip(ex.input_ids, ex.labels, strict=True):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return runs + ([current] if current else [])


def qa_row() -> Row:
    return Row("s1", "findings_qa", "d1", [
        {"role": "user", "content": f"{IMAGE_PREFIX}Predicted Findings: edema. Write the findings."},
        {"role": "assistant", "content": "Mild pulmonary edema is present."},
        {"role": "user", "content": "Is there edema?"},
        {"role": "assistant", "content": "yes"},
    ])


@pytest.fixture(scope="module")
def sentencepiece_style_tokenizer(tmp_path_factory):
    """A Llama-style tokenizer (Metaspace "\u2581" pieces, byte fallback) as Vicuna's converts to."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    rng = random.Random(1)
    texts = [load_conversation().render(demo_row(i, "train", rng)["messages"], open_turn=False) for i in range(100)]
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=True)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>", "<s>", "</s>"],
                                                       show_progress=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme="first", split=False)  # as LlamaConverter
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    fast.save_pretrained(tmp_path_factory.mktemp("sp") / "tok")
    return fast


@pytest.mark.parametrize("family", ["byte-level", "sentencepiece"])
def test_only_the_final_answer_and_its_eos_carry_labels(family, tiny_model, sentencepiece_style_tokenizer):
    tok = load_tokenizer(str(tiny_model), None) if family == "byte-level" else sentencepiece_style_tokenizer
    conversation = load_conversation()
    (ex,) = Encoder(tok, conversation, max_length=512, supervise="last").encode([qa_row()])
    (run,) = labeled_runs(ex)
    assert tok.decode(run) == " yes</s>"  # the answer's first token carries the space after "ASSISTANT:"
    assert run[-1] == tok.eos_token_id and ex.input_ids[-len(run):] == run
    prompt = tok.decode(ex.input_ids[:-len(run)]).replace("<s>", "").strip()
    assert prompt == conversation.render(qa_row().messages[:-1], open_turn=True)
    assert ex.n_labels == len(run)


def test_supervise_all_labels_every_assistant_turn(tiny_model):
    tok = load_tokenizer(str(tiny_model), None)
    (ex,) = Encoder(tok, load_conversation(), max_length=512, supervise="all").encode([qa_row()])
    assert [tok.decode(run) for run in labeled_runs(ex)] == [" Mild pulmonary edema is present.</s>", " yes</s>"]


def test_truncation_that_cuts_the_answer_skips_the_row(tiny_model):
    tok = load_tokenizer(str(tiny_model), None)
    encoder = Encoder(tok, load_conversation(), max_length=40, supervise="last")
    assert encoder.encode([qa_row()]) == [Skip.TOO_LONG]


def test_image_slot_expands_to_unlabeled_placeholders(tiny_model):
    tok = load_tokenizer(str(tiny_model), None)
    plain = Encoder(tok, load_conversation(), max_length=512, supervise="last").encode([qa_row()])[0]
    slot = ImageSlot(add_image_token(tok, "<IMG>"), n_tokens=5)
    (ex,) = Encoder(tok, load_conversation(), max_length=512, supervise="last", image=slot).encode([qa_row()])
    positions = [i for i, t in enumerate(ex.input_ids) if t == slot.token_id]
    assert len(positions) == 5 and positions == list(range(positions[0], positions[0] + 5))
    assert all(ex.labels[i] == IGNORE for i in positions)
    assert ex.has_image and ex.dicom_id == "d1"
    assert labeled_runs(ex) == labeled_runs(plain)  # same supervised tokens as text-only
    assert slot.token_id not in plain.input_ids  # text-only: <IMG> stays ordinary text


def test_a_conversation_without_a_final_answer_is_an_input_error(tiny_model):
    tok = load_tokenizer(str(tiny_model), None)
    row = Row("bad", "report_generation", "d", qa_row().messages[:-1])
    with pytest.raises(InputError, match="record bad: the conversation does not end with an assistant turn"):
        Encoder(tok, load_conversation(), max_length=512, supervise="last").encode([row])


# --- shards -------------------------------------------------------------------------------------

def test_stream_is_seeded_complete_and_mixes_tasks(workdir):
    shards = open_shards(workdir.shards(VERSION))
    files = shards.files("train")
    assert len(files) == 3 and all(pq.ParquetFile(f).num_row_groups == 4 for f in files)

    def ids(epoch: int, tasks=None) -> list[str]:
        return [r.sample_id for r in stream_rows(files, "train", tasks, seed=1, purpose="train", epoch=epoch,
                                                 buffer_size=20)]

    first = ids(0)
    assert first == ids(0) and first != ids(1)
    assert sorted(first) == [f"train-{i:05d}" for i in range(192)]
    assert first[:64] != sorted(first[:64])  # not file order
    qa = ids(0, ["findings_qa"])
    assert len(qa) == 64 and all(int(s[-5:]) % 3 == 1 for s in qa)


def test_shard_that_does_not_match_the_manifest_is_refused(workdir):
    shards = open_shards(workdir.shards(VERSION))
    victim = shards.files("validate")[0]
    victim.write_bytes(victim.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(InputError, match="sha256 differs from manifest.json"):
        shards.verify("validate")


def test_missing_manifest_is_a_one_line_input_error(tmp_path, tiny_model):
    with pytest.raises(InputError, match=r"manifest.json: file not found \(expected the output of the assemble"):
        run_train(train_params(tiny_model), Workdir.at(tmp_path))


def test_stage_spec_names_the_manifest_and_the_adapter(workdir, tiny_model):
    spec = stage_spec(train_params("demo-tiny"), workdir)
    assert workdir.shards(VERSION) / "manifest.json" in spec.inputs
    assert workdir.models / "demo-tiny" in spec.inputs
    assert spec.outputs == [workdir.root / "adapters" / VERSION / "adapter", workdir.report("train-summary.json")]


@pytest.mark.parametrize("override, message", [
    ({"supervise": "first"}, "train.supervise is 'first'"),
    ({"tasks": ["nope"]}, "train.tasks has unknown task"),
    pytest.param({"load_in_8bit": True}, "train.load_in_8bit needs a CUDA GPU",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")),
    ({"lora_r": 4}, "unknown key"),
])
def test_bad_settings_are_config_errors(workdir, tiny_model, override, message):
    with pytest.raises(ConfigError, match=message):
        run_train(train_params(tiny_model, **override), workdir)


# --- training -----------------------------------------------------------------------------------

def test_demo_model_loss_falls_and_the_adapter_carries_its_provenance(workdir):
    params = train_params("demo-tiny", eval_every=10)
    summary = run_train(params, workdir, max_steps=30)

    assert (workdir.models / "demo-tiny" / "config.json").exists()  # built offline from the shards
    losses = summary["train_loss_per_step"]
    assert summary["steps"] == len(losses) == 30 and summary["stop_reason"] == "max_steps"
    assert np.mean(losses[-10:]) < np.mean(losses[:3]) - 0.1
    evals = [e["eval_loss"] for e in summary["evals"]]
    assert [e["step"] for e in summary["evals"]] == [10, 20, 24, 30]  # every 10 steps + the epoch end (24)
    assert evals == sorted(evals, reverse=True)

    adapter = Path(summary["adapter"])
    assert adapter == workdir.root / "adapters" / VERSION / "adapter"
    meta = json.loads((adapter / "radialog_metadata.json").read_text())
    manifest = workdir.shards(VERSION) / "manifest.json"
    assert meta["dataset_version"] == VERSION and meta["manifest_sha256"] == sha256_file(manifest)
    assert meta["dataset_config_hash"] == "cfg123" and meta["base_model"] == "demo-tiny"
    assert meta["step"] == summary["best_step"] == 30 and meta["eval_loss"] == evals[-1]
    assert meta["conversation"] == dataclasses.asdict(params_conversation(params))  # load_adapter renders with it
    config = json.loads((adapter / "adapter_config.json").read_text())
    assert config["r"] == 8 and sorted(config["target_modules"]) == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert json.loads(workdir.report("train-summary.json").read_text())["steps"] == 30


def test_interrupted_run_resumes_where_it_stopped(workdir, tiny_model, tmp_path, monkeypatch):
    # 24 steps per epoch: the crash at step 28 loses steps 26-27; the run resumes in epoch 2 at step 25
    params = train_params(tiny_model, eval_every=None, save_every=5, keep_checkpoints=2)
    straight = run_train({**params, "train": {**params["train"], "output_dir": str(tmp_path / "a")}}, workdir,
                         max_steps=30)

    interrupted = {**params, "train": {**params["train"], "output_dir": str(tmp_path / "b")}}
    real_step = Trainer.train_step

    def crash_at_step_28(self, rows):
        if self.progress.step == 27:
            raise KeyboardInterrupt
        return real_step(self, rows)

    monkeypatch.setattr(Trainer, "train_step", crash_at_step_28)
    with pytest.raises(KeyboardInterrupt):
        run_train(interrupted, workdir, max_steps=30)
    checkpoints = sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir())
    assert checkpoints == ["step-0000024", "step-0000025"]  # epoch end + every 5 steps, older ones pruned
    progress = json.loads((tmp_path / "b" / "checkpoints" / "step-0000025" / "progress.json").read_text())
    assert (progress["epoch"], progress["rows_in_epoch"]) == (1, 8)
    monkeypatch.setattr(Trainer, "train_step", real_step)

    resumed = run_train(interrupted, workdir, max_steps=30)
    assert resumed["resumed"] and resumed["steps"] == 30
    assert resumed["train_loss_per_step"] == pytest.approx(straight["train_loss_per_step"], abs=1e-6)
    a, b = lora_weights(Path(straight["adapter"])), lora_weights(Path(resumed["adapter"]))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)

    again = run_train(interrupted, workdir, max_steps=30)  # a finished run resumes to its end
    assert again["steps"] == 30 and again["train_loss_per_step"] == resumed["train_loss_per_step"]
    with pytest.raises(ConfigError, match="checkpoint was written for other shards or training settings"):
        run_train({**interrupted, "train": {**interrupted["train"], "lr": 1e-3}}, workdir, max_steps=30)


def test_saved_adapter_reloads_and_generates(workdir, tiny_model):
    summary = run_train(train_params(tiny_model, eval_every=None, epochs=1), workdir, max_steps=6)
    # the adapter holds the trained weights: those of the final checkpoint (step 6, the only evaluation)
    final = Path(summary["adapter"]).parent / "checkpoints" / "step-0000006" / "state.pt"
    trained_state = torch.load(final, weights_only=True)["trainable"]
    saved = lora_weights(Path(summary["adapter"]))
    assert len(saved) == len(trained_state) > 0
    for name, tensor in trained_state.items():
        assert torch.equal(saved[name.removeprefix("lm.").replace(".default.", ".")], tensor)

    trained = load_adapter(summary["adapter"])
    messages = qa_row().messages[:1]
    first = trained.generate(messages, max_new_tokens=8)
    assert isinstance(first, str) and first == trained.generate(messages, max_new_tokens=8)

    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    base = AutoModelForCausalLM.from_pretrained(str(tiny_model))
    ids = torch.tensor([trained.encoder.encode_prompt(messages)])
    with torch.no_grad():
        with_adapter = trained.model(ids, torch.ones_like(ids))
        without = base(ids).logits
        # the reloaded weights are the saved ones: a fresh PeftModel over the same files agrees
        again = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(str(tiny_model)), summary["adapter"])
        assert torch.allclose(with_adapter, again(ids).logits, atol=1e-5)
    assert not torch.allclose(with_adapter, without, atol=1e-4)


@pytest.mark.slow
def test_bf16_mixed_precision_and_gradient_checkpointing(workdir, tiny_model, tmp_path, monkeypatch):
    import transformers.modeling_utils as hf  # gradient_checkpointing_enable binds its torch checkpoint function

    recomputed = []
    real = hf.checkpoint
    monkeypatch.setattr(hf, "checkpoint", lambda *a, **k: recomputed.append(1) or real(*a, **k))

    def run(name: str, **settings) -> dict:
        lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}
        params = train_params(tiny_model, eval_every=None, epochs=1, output_dir=str(tmp_path / name), lora=lora,
                              **settings)
        return run_train(params, workdir, max_steps=3)

    plain = run("fp32")
    assert not recomputed
    checkpointed = run("checkpointed", gradient_checkpointing=True)
    assert len(recomputed) >= 2 * 3  # both decoder layers, every step
    assert checkpointed["train_loss_per_step"] == pytest.approx(plain["train_loss_per_step"], rel=1e-6)
    mixed = run("bf16", dtype="bfloat16", gradient_checkpointing=True)
    assert mixed["dtype"] == "bfloat16"
    assert mixed["train_loss_per_step"] == pytest.approx(plain["train_loss_per_step"], rel=1e-3)
    assert mixed["train_loss_per_step"] != plain["train_loss_per_step"]  # bf16 matmuls did run
    state = torch.load(tmp_path / "bf16" / "checkpoints" / "step-0000003" / "state.pt", weights_only=True)
    assert {t.dtype for t in state["trainable"].values()} == {torch.float32}  # LoRA weights stay fp32
    assert {t.dtype for t in lora_weights(tmp_path / "bf16" / "adapter").values()} == {torch.float32}


# --- image features ---------------------------------------------------------------------------

def write_features(path: Path, dicoms: list[str], n_tokens: int, dim: int) -> np.ndarray:
    values = np.random.default_rng(0).normal(size=(len(dicoms), n_tokens * dim)).astype(np.float32)
    column = pa.FixedSizeListArray.from_arrays(pa.array(values.ravel()), n_tokens * dim)
    pq.write_table(pa.table({"dicom_id": dicoms, "features": column}), path)
    return values


def test_image_features_are_projected_into_the_image_slot(workdir, tiny_model, tmp_path):
    from radialog_instruct.trainer.features import open_features
    from radialog_instruct.trainer.loop import token_loss_sum

    # every fourth train dicom has no features: those rows are skipped
    dicoms = [f"dicom-{split}-{i:05d}" for split, n in (("train", 192), ("validate", 32)) for i in range(n)
              if split == "validate" or i % 4]
    values = write_features(tmp_path / "feats.parquet", dicoms, n_tokens=4, dim=8)
    np.save(tmp_path / "feats.npy", values.reshape(len(dicoms), 4, 8))
    (tmp_path / "feats.ids.txt").write_text("\n".join(dicoms) + "\n")
    parquet, npy = open_features(tmp_path / "feats.parquet", 4), open_features(tmp_path / "feats.npy", 4)
    assert (parquet.dim, parquet.n_tokens) == (npy.dim, npy.n_tokens) == (8, 4)
    assert torch.equal(parquet.features(dicoms[3:5]), npy.features(dicoms[3:5]))
    assert not parquet.has("dicom-train-00000") and not parquet.has(None)

    params = train_params(tiny_model, eval_every=None, epochs=1,
                          features={"path": str(tmp_path / "feats.parquet"), "n_tokens": 4})
    summary = run_train(params, workdir, max_steps=8)
    assert summary["image_features"] and summary["skipped_rows"]["no_features"] > 0
    adapter = Path(summary["adapter"])
    assert (adapter / "projector.safetensors").exists()
    meta = json.loads((adapter / "radialog_metadata.json").read_text())
    assert meta["image"]["dim"] == 8 and meta["image"]["n_tokens"] == 4

    trained = load_adapter(adapter)
    row = Row("x", "report_generation", dicoms[0], qa_row().messages[:2])
    (ex,) = trained.encoder.encode([row])
    ids, labels = torch.tensor([ex.input_ids]), torch.tensor([ex.labels])
    feats = parquet.features([dicoms[0]])
    loss = token_loss_sum(trained.model(ids, torch.ones_like(ids), feats), labels)
    loss.backward()
    assert trained.model.projector.weight.grad.abs().sum() > 0  # the loss reaches the projector
    with torch.no_grad():
        other = token_loss_sum(trained.model(ids, torch.ones_like(ids), parquet.features([dicoms[1]])), labels)
    assert not torch.isclose(loss.detach(), other)  # the answer depends on the image features
    assert isinstance(trained.generate(qa_row().messages[:1], features=feats, max_new_tokens=4), str)
