"""CheXbert's real code path on a tiny random-weight model saved in the CheXbert checkpoint layout:
loading (strict about real weights), length-sorted batching, truncation, decoding, the per-text
cache, and the labeler choice. No GPU, no hub."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.labeling.cache import cache_folder, label_texts_cached, lookup_or_label
from radialog_instruct.tasks.labeling.chexbert import (
    MAX_TOKENS,
    ChexbertLabeler,
    ChexbertModel,
    decode,
    load_encoder,
    load_weights,
)
from radialog_instruct.tasks.labeling.selection import build_labeler, choose_labeler
from radialog_instruct.tasks.labeling.settings import ChexbertConfig, LabelConfig
from radialog_instruct.tasks.models.tiny_bert import TinyChexbert, build_chexbert

TEXTS = [
    "There is a small left pleural effusion.", "Heart size is normal. The lungs are clear.",
    "Mild pulmonary edema is present with bilateral effusions and bibasilar atelectasis.",
    "No pneumothorax.", "The cardiomediastinal silhouette is enlarged.",
    "A right internal jugular line ends in the SVC. No focal consolidation. Healed left rib fractures.",
    "Endotracheal tube terminates 4 cm above the carina. Nasogastric tube courses below the diaphragm.",
    "Possible left lower lobe pneumonia.", "Hazy opacity at the right base.",
    "Moderate cardiomegaly, unchanged. No pulmonary edema. No pleural effusion or pneumothorax.",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory, demo_workdir) -> TinyChexbert:
    reports = pd.read_parquet(demo_workdir.table("reports"))
    return build_chexbert(tmp_path_factory.mktemp("tiny-chexbert"), list(reports["findings"]) + TEXTS)


@pytest.fixture(scope="module")
def labeler(tiny: TinyChexbert) -> ChexbertLabeler:
    return ChexbertLabeler(tiny.checkpoint, str(tiny.encoder_dir), batch_size=3, device="cpu")


def reference(labeler: ChexbertLabeler, texts: list[str]) -> np.ndarray:
    """One text at a time, no padding: what batching must reproduce."""
    rows = []
    with torch.no_grad():
        for ids in labeler.encode(texts):
            x = torch.tensor([ids])
            rows.append([int(h.argmax()) for h in labeler.model.logits(x, torch.ones_like(x))])
    return decode(np.array(rows))


def test_tiny_builder_is_deterministic(tmp_path: Path):
    first, second = build_chexbert(tmp_path / "a", TEXTS, seed=3), build_chexbert(tmp_path / "b", TEXTS, seed=3)
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        assert (first.encoder_dir / name).read_bytes() == (second.encoder_dir / name).read_bytes()
    assert first.checkpoint.read_bytes() == second.checkpoint.read_bytes()
    other = build_chexbert(tmp_path / "c", TEXTS, seed=4)
    assert other.checkpoint.read_bytes() != first.checkpoint.read_bytes()
    keys = torch.load(first.checkpoint)["model_state_dict"].keys()
    assert all(k.startswith(("module.bert.", "module.linear_heads.")) for k in keys)
    assert "module.bert.pooler.dense.weight" in keys and "module.linear_heads.13.bias" in keys


def test_decode_maps_classes_like_chexbert():
    classes = np.array([[0, 1, 2, 3] * 3 + [1, 1], [3, 2, 1, 0] * 3 + [0, 0]])
    out = decode(classes)
    np.testing.assert_array_equal(out[0], [np.nan, 1, 0, -1] * 3 + [1, 1])
    np.testing.assert_array_equal(out[1], [-1, 0, 1, np.nan] * 3 + [np.nan, np.nan])
    assert out.dtype == np.float32


def test_batched_inference_matches_one_by_one(labeler: ChexbertLabeler):
    texts = TEXTS * 2 + ["  Line one\n\n  line   two. "]
    out = labeler.label(texts)
    np.testing.assert_array_equal(out, reference(labeler, texts))
    assert out.shape == (len(texts), 14) and out.dtype == np.float32
    assert len({tuple(np.nan_to_num(r, nan=9)) for r in out}) > 3  # the outputs depend on the text
    np.testing.assert_array_equal(out[0], out[len(TEXTS)])


def test_whitespace_is_collapsed_and_long_texts_are_cut(labeler: ChexbertLabeler):
    assert labeler.encode(["a\n b   c"]) == labeler.encode(["a b c"])
    long = " ".join(["effusion"] * 800)
    ids = labeler.encode([long])[0]
    tok = labeler.tokenizer
    assert len(ids) == MAX_TOKENS and ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert labeler.label([long, "No pneumothorax."]).shape == (2, 14)


def test_forced_heads_give_each_class(tiny: TinyChexbert, tmp_path: Path):
    state = torch.load(tiny.checkpoint)["model_state_dict"]
    wanted = [1, 2, 3, 0] * 3 + [2, 1]  # per head; the last is No Finding (2 classes)
    for k, cls in enumerate(wanted):
        state[f"module.linear_heads.{k}.weight"].zero_()
        bias = state[f"module.linear_heads.{k}.bias"]
        bias.zero_()
        bias[cls % len(bias)] = 5.0
    path = tmp_path / "forced.pth"
    torch.save({"model_state_dict": state}, path)
    out = ChexbertLabeler(path, str(tiny.encoder_dir), device="cpu").label(TEXTS[:4])
    expected = [1, 0, -1, np.nan] * 3 + [0, 1]
    np.testing.assert_array_equal(out, np.tile(np.array(expected, np.float32), (4, 1)))


def test_checkpoint_problems_fail_loudly(tiny: TinyChexbert, tmp_path: Path):
    config, _ = load_encoder(str(tiny.encoder_dir))
    state = torch.load(tiny.checkpoint)["model_state_dict"]

    def save(name: str, payload: object) -> Path:
        path = tmp_path / name
        torch.save(payload, path)
        return path

    with_buffer = dict(state, **{"module.bert.embeddings.position_ids": torch.arange(512)[None]})
    load_weights(ChexbertModel(config), save("buffer.pth", {"model_state_dict": with_buffer}))  # tolerated

    missing = {k: v for k, v in state.items() if k != "module.linear_heads.13.weight"}
    with pytest.raises(InputError, match=r"missing\.pth: weights do not fit .*missing linear_heads\.13\.weight"):
        load_weights(ChexbertModel(config), save("missing.pth", {"model_state_dict": missing}))
    shaped = dict(state, **{"module.linear_heads.0.weight": torch.zeros(3, config.hidden_size)})
    with pytest.raises(InputError, match=r"mis-shaped linear_heads\.0\.weight \(3, 32\) != \(4, 32\)"):
        load_weights(ChexbertModel(config), save("shaped.pth", {"model_state_dict": shaped}))
    extra = dict(state, **{"module.classifier.weight": torch.zeros(2)})
    with pytest.raises(InputError, match=r"unexpected classifier\.weight"):
        load_weights(ChexbertModel(config), save("extra.pth", {"model_state_dict": extra}))
    with pytest.raises(InputError, match=r"no model_state_dict"):
        load_weights(ChexbertModel(config), save("bare.pth", state))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"junk\.pth: not a readable torch checkpoint"):
        load_weights(ChexbertModel(config), tmp_path / "junk.pth")


def test_cache_labels_only_new_text(tiny: TinyChexbert, labeler: ChexbertLabeler, tmp_path: Path):
    texts = TEXTS[:6] + ["", TEXTS[0]]
    first = lookup_or_label(labeler, texts, tmp_path, chunk_size=4)
    assert (first.cache_hits, first.labeled, first.empty) == (0, 6, 1)
    assert len(list(cache_folder(tmp_path, labeler).glob("part-*.parquet"))) == 2  # 6 texts, chunks of 4
    assert np.isnan(first.values[6]).all()
    np.testing.assert_array_equal(first.values[[0, 1, 2, 3, 4, 5, 7]], labeler.label(texts[:6] + [TEXTS[0]]))

    fresh = ChexbertLabeler(tiny.checkpoint, str(tiny.encoder_dir), device="cpu")  # same version, new object
    again = lookup_or_label(fresh, texts + [TEXTS[8]], tmp_path)
    assert (again.cache_hits, again.labeled) == (7, 1)
    np.testing.assert_array_equal(again.values[:8], first.values)
    only_cached = ChexbertLabeler(tiny.checkpoint, str(tiny.encoder_dir), device="cpu")
    np.testing.assert_array_equal(label_texts_cached(only_cached, texts, tmp_path), first.values)
    assert "model" not in vars(only_cached)  # a fully cached run never loads the weights


def test_choice_and_build(tiny: TinyChexbert, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    local = LabelConfig(chexbert=ChexbertConfig(checkpoint=str(tiny.checkpoint), encoder=str(tiny.encoder_dir),
                                                device="cpu"))
    with caplog.at_level(logging.INFO, logger="radialog_instruct.label"):
        choice = choose_labeler(local)
    assert choice.labeler == "chexbert" and str(tiny.checkpoint) in choice.reason
    assert "labeler: chexbert" in caplog.text
    built = build_labeler("chexbert", local)
    assert built.name == "chexbert" and built.dtype == torch.float32 and built.device.type == "cpu"

    gone = LabelConfig(chexbert=ChexbertConfig(checkpoint=str(tmp_path / "absent.pth"), hub_repo="nobody/nothing"))
    fallback = choose_labeler(gone)
    assert fallback.labeler == "rules" and "does not exist" in fallback.reason and "not on this machine" in fallback.reason
    assert choose_labeler(gone, "chexbert").labeler == "chexbert"
    with pytest.raises(InputError, match=r"absent\.pth: checkpoint file not found"):
        build_labeler("chexbert", gone)
    assert build_labeler("rules", gone).name == "rules"

    no_encoder = LabelConfig(chexbert=ChexbertConfig(checkpoint=str(tiny.checkpoint), encoder=str(tmp_path / "enc")))
    assert choose_labeler(no_encoder).labeler == "rules"
    with pytest.raises(InputError, match=r"enc: cannot load the encoder config/tokenizer"):
        build_labeler("chexbert", no_encoder)
