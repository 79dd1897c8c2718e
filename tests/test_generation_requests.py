"""Request building and hashing, configuration and model identity (no model runs here)."""

from __future__ import annotations

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from radialog_instruct.tasks.errors import ConfigError, InputError
from radialog_instruct.tasks.generation.config import PRESETS, load_config
from radialog_instruct.tasks.generation.engine import Sampling
from radialog_instruct.tasks.generation.models import folder_fingerprint, model_ref
from radialog_instruct.tasks.generation.requests import (
    RequestSettings,
    build_requests,
    request_hash,
    request_hashes,
    shard_requests,
)
from radialog_instruct.tasks.text.conversation import load_conversation

from gen_fixtures import make_params, replay_messages, write_plan

SETTINGS = RequestSettings(model="lmsys/vicuna-7b-v1.5", revision="default", sampling=Sampling(256), seed=0)

pytest_plugins = ["gen_fixtures"]


def test_hash_follows_the_documented_recipe():
    prompt = load_conversation().render([{"role": "user", "content": "Report: x\nSummarize."}])
    payload = {"v": 1, "model": "lmsys/vicuna-7b-v1.5", "revision": "default",
               "sampling": '{"max_new_tokens":256,"temperature":0.0,"top_p":1.0}', "seed": 0,
               "template_version": "3", "conversation": "vicuna_v1.1@1", "prompt": prompt}
    expected = hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":"),
                                         ensure_ascii=False).encode()).hexdigest()
    assert request_hash(SETTINGS, prompt, "3") == expected
    assert prompt.endswith("USER: Report: x\nSummarize. ASSISTANT:")


@pytest.mark.parametrize("change", [
    {"model": "lmsys/vicuna-13b-v1.3"}, {"revision": "abc123"}, {"seed": 1},
    {"sampling": Sampling(128)}, {"sampling": Sampling(256, temperature=0.7)}, {"sampling": Sampling(256, top_p=0.9)},
])
def test_every_identity_part_changes_the_hash(change):
    other = RequestSettings(**{**SETTINGS.__dict__, **change})
    assert request_hash(other, "p", "1") != request_hash(SETTINGS, "p", "1")


def test_template_version_and_prompt_change_the_hash():
    base = request_hash(SETTINGS, "p", "1")
    assert request_hash(SETTINGS, "p", "2") != base
    assert request_hash(SETTINGS, "q", "1") != base
    assert request_hash(SETTINGS, "p", "1") == base


def test_request_hashes_are_row_aligned_and_identical_prompts_dedupe(gen_wd):
    messages = replay_messages(5)
    rows = [messages[0], None, messages[1], messages[0], None, messages[2]]
    write_plan(gen_wd, rows)
    table = pq.read_table(gen_wd.table("plan"))
    hashes = request_hashes(table, SETTINGS)
    assert [h is None for h in hashes] == [False, True, False, False, True, False]
    assert hashes[0] == hashes[3] and len({hashes[0], hashes[2], hashes[5]}) == 3
    # a pandas frame read from Parquet (cells are numpy arrays of dicts) gives the same hashes
    assert request_hashes(table.to_pandas(), SETTINGS) == hashes
    requests, replay_rows = build_requests(table, SETTINGS)
    assert replay_rows == 4
    assert sorted(r.request_hash for r in requests) == sorted({h for h in hashes if h})
    assert [r.prompt for r in requests] == sorted(r.prompt for r in requests)
    assert all(r.template_version == "1/vicuna_v1.1@1" and r.seed == 0 for r in requests)


def test_gen_messages_must_end_with_a_user_turn(gen_wd):
    write_plan(gen_wd, [[{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]])
    with pytest.raises(InputError, match="record s0"):
        request_hashes(pq.read_table(gen_wd.table("plan")), SETTINGS)


def test_shards_partition_the_requests(gen_wd):
    write_plan(gen_wd, replay_messages(40))
    requests, _ = build_requests(pq.read_table(gen_wd.table("plan")), SETTINGS)
    parts = [shard_requests(requests, (i, 3)) for i in range(3)]
    assert all(parts)
    assert sorted(r.request_hash for p in parts for r in p) == sorted(r.request_hash for r in requests)


def test_presets_and_overrides():
    assert PRESETS["vicuna-13b-v1.3"].model == "lmsys/vicuna-13b-v1.3"
    cfg = load_config(make_params(model_preset="vicuna-13b-v1.3", max_new_tokens=None))
    assert Sampling.from_config(cfg) == Sampling(256, 0.0, 1.0)
    cfg = load_config(make_params(model_preset="vicuna-7b-v1.5", max_new_tokens=None, temperature=0.7))
    assert Sampling.from_config(cfg) == Sampling(256, 0.7, 1.0) and cfg.model_id == "lmsys/vicuna-7b-v1.5"


@pytest.mark.parametrize("change, message", [
    ({"model_preset": "gpt"}, "model_preset"), ({"backend": "tgi"}, "backend"), ({"chunk_size": 0}, "chunk_size"),
    ({"top_p": 0}, "top_p"), ({"colour": 1}, "unknown key"), ({"openai": {"retries": 2}}, "unknown key"),
])
def test_bad_settings_are_one_line_config_errors(change, message):
    with pytest.raises(ConfigError, match=message):
        load_config(make_params(**change))


def test_model_identity(gen_wd, tmp_path):
    hub = model_ref(load_config(make_params(model_preset="vicuna-7b-v1.5")), gen_wd)
    assert (hub.name, hub.key_revision, hub.revision) == ("lmsys/vicuna-7b-v1.5", "default", None)
    pinned = model_ref(load_config(make_params(model_preset="vicuna-7b-v1.5", revision="de56c35")), gen_wd)
    assert (pinned.key_revision, pinned.revision) == ("de56c35", "de56c35")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"\0" * (3 << 20))
    local = model_ref(load_config(make_params(model=str(folder))), gen_wd)
    assert local.key_revision.startswith("local-") and local.source == str(folder)
    with open(folder / "model.safetensors", "r+b") as fh:  # new weights, same size
        fh.seek((3 << 20) - 10)
        fh.write(b"\1")
    assert folder_fingerprint(folder) != local.key_revision
    snapshot = tmp_path / "models--x--y" / "snapshots" / ("ab" * 20)
    snapshot.mkdir(parents=True)
    assert folder_fingerprint(snapshot) == "ab" * 20


def test_demo_identity_needs_no_model_and_building_it_needs_the_reports(gen_wd):
    cfg = load_config(make_params())
    demo = model_ref(cfg, gen_wd)
    assert (demo.name, demo.key_revision, demo.meaningful) == ("demo-tiny", "tiny-llama-seed0", False)
    assert not (gen_wd.models / "demo-tiny").exists()
    with pytest.raises(InputError, match="reports.parquet"):
        model_ref(cfg, gen_wd, build=True)


def test_importing_the_stage_loads_no_model_library():
    import subprocess
    import sys

    code = ("import sys, radialog_instruct.tasks.generation.stage, radialog_instruct.tasks.generation.requests; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'vllm', 'transformers')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"

