"""The generate stage with the transformers backend on a tiny random Llama (CPU, offline)."""

from __future__ import annotations

import dataclasses

import pyarrow.parquet as pq
import pytest
import torch

from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.generation.config import TransformersSettings, load_config
from radialog_instruct.tasks.generation.engine import Request, Sampling
from radialog_instruct.tasks.generation.models import model_ref
from radialog_instruct.tasks.generation.requests import request_hashes, request_settings
from radialog_instruct.tasks.generation.stage import GenerationError, merge_summaries, run_generate, stage_spec
from radialog_instruct.tasks.generation.transformers_backend import TransformersBackend
from radialog_instruct.tasks.io import read_json
from radialog_instruct.tasks.text.conversation import conversation_file
from radialog_instruct.tasks.workdir import Workdir

from gen_fixtures import make_params, replay_messages, write_plan, write_reports

pytest_plugins = ["gen_fixtures"]
pytestmark = pytest.mark.slow

SUMMARY_KEYS = {"requests", "cache_hits", "model_calls", "prompt_tokens", "completion_tokens", "tokens_per_s",
                "backend", "model", "revision", "meaningful", "failed"}


@pytest.fixture(scope="module")
def backend(gen_tiny_model, tmp_path_factory):
    cfg = load_config(make_params(model=str(gen_tiny_model)))
    model = model_ref(cfg, Workdir.at(tmp_path_factory.mktemp("work")))
    engine = TransformersBackend(model, TransformersSettings(batch_size=4, device="cpu", dtype="float32"))
    yield engine
    engine.close()


def requests_for(prompts: list[str], sampling: Sampling, seed: int = 0) -> list[Request]:
    return [Request(f"h{i}", p, sampling, seed, "1") for i, p in enumerate(prompts)]


def test_stage_fills_the_cache_and_a_rerun_makes_no_model_call(gen_wd, gen_tiny_model):
    messages = replay_messages(9)
    write_plan(gen_wd, [messages[0], None, *messages[1:], messages[3]])  # one non-replay row, one duplicate
    params = make_params(model=str(gen_tiny_model))
    first = run_generate(params, gen_wd)
    assert SUMMARY_KEYS <= set(first)
    assert (first["requests"], first["replay_rows"], first["cache_hits"], first["model_calls"]) == (9, 10, 0, 9)
    assert first["backend"] == "transformers" and first["model"] == str(gen_tiny_model)
    assert first["revision"].startswith("local-") and first["failed"] == 0
    assert first["completion_tokens"] == 9 * 8 and first["prompt_tokens"] > 9 * 20 and first["tokens_per_s"] > 0
    assert read_json(gen_wd.report("generate-summary.json")) == first
    assert len(GenerationCache.of(gen_wd).chunk_files()) == 3  # chunk_size 4: 4 + 4 + 1

    plan = pq.read_table(gen_wd.table("plan"))
    hashes = request_hashes(plan, request_settings(params, gen_wd))
    assert request_hashes(plan.to_pandas(), params, gen_wd) == hashes  # the assemble stage's call
    assert [h is None for h in hashes] == [False, True] + [False] * 9 and hashes[4] == hashes[10]
    frame = GenerationCache.of(gen_wd).lookup(hashes)
    assert frame["request_hash"].tolist() == list(dict.fromkeys(h for h in hashes if h))
    assert (frame["completion_tokens"] == 8).all() and frame["text"].str.len().min() > 0
    assert set(frame["finish_reason"]) == {"length"} and set(frame["backend"]) == {"transformers"}

    second = run_generate(params, gen_wd)
    assert (second["cache_hits"], second["model_calls"], second["completion_tokens"]) == (9, 0, 0)
    assert len(GenerationCache.of(gen_wd).chunk_files()) == 3


def test_settings_changes_generate_only_the_new_requests(gen_wd, gen_tiny_model):
    write_plan(gen_wd, replay_messages(3))
    run_generate(make_params(model=str(gen_tiny_model)), gen_wd)
    again = run_generate(make_params(model=str(gen_tiny_model), max_new_tokens=4), gen_wd)
    assert (again["cache_hits"], again["model_calls"], again["completion_tokens"]) == (0, 3, 12)
    write_plan(gen_wd, replay_messages(4), template_version="2")
    changed = run_generate(make_params(model=str(gen_tiny_model), max_new_tokens=4), gen_wd)
    assert (changed["cache_hits"], changed["model_calls"]) == (0, 4)
    assert len(GenerationCache.of(gen_wd).read()) == 10


def test_shards_split_the_work_and_a_final_run_finds_everything(gen_wd, gen_tiny_model):
    write_plan(gen_wd, replay_messages(8))
    params = make_params(model=str(gen_tiny_model))
    parts = [run_generate(params, gen_wd, shard=(i, 2)) for i in range(2)]
    assert sum(p["model_calls"] for p in parts) == 8 and all(p["model_calls"] for p in parts)
    assert read_json(gen_wd.report("generate-summary-shard-1-of-2.json")) == parts[1]
    merged = merge_summaries(gen_wd, parts)
    assert (merged["requests"], merged["model_calls"], merged["shards"], merged["shard"]) == (8, 8, 2, None)
    assert merged["completion_tokens"] == 8 * 8 and read_json(gen_wd.report("generate-summary.json")) == merged
    assert run_generate(params, gen_wd)["model_calls"] == 0


def test_demo_tiny_is_built_from_the_reports_and_flagged_meaningless(gen_wd):
    write_reports(gen_wd)
    write_plan(gen_wd, replay_messages(2))
    summary = run_generate(make_params(max_new_tokens=4), gen_wd)
    assert (gen_wd.models / "demo-tiny" / "model.safetensors").exists()
    assert summary["model"] == "demo-tiny" and summary["meaningful"] is False and "meaningless" in summary["note"]
    assert summary["model_calls"] == 2


def test_stage_spec_covers_plan_conversation_summary_and_cache(gen_wd):
    spec = stage_spec(make_params(), gen_wd)
    assert spec.inputs == [gen_wd.table("plan"), conversation_file()]
    assert spec.outputs == [gen_wd.report("generate-summary.json")]
    assert spec.persistent == [gen_wd.cache / "generation"]


def test_greedy_batches_do_not_change_results(backend):
    prompts = [m[0]["content"] for m in replay_messages(6)]
    batched = {r.request_hash: r for r in backend.generate(requests_for(prompts, Sampling(6)))}
    alone = backend.generate(requests_for(prompts[4:5], Sampling(6)))
    assert dataclasses.replace(next(alone), request_hash="h4", latency_s=0) == \
        dataclasses.replace(batched["h4"], latency_s=0)


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch(backend):
    prompts = [m[0]["content"] for m in replay_messages(5)]
    sampling = Sampling(8, temperature=1.0, top_p=0.9)

    def texts(requests: list[Request]) -> dict[str, str]:
        return {r.request_hash: r.text for r in backend.generate(requests)}

    batch = texts(requests_for(prompts, sampling, seed=7))
    assert texts(requests_for(prompts, sampling, seed=7)) == batch
    assert texts(requests_for(prompts[2:3], sampling, seed=7)) == {"h0": batch["h2"]}
    assert texts(requests_for(prompts, sampling, seed=8)) != batch
    assert texts(requests_for(prompts, Sampling(8))) != batch


def test_end_of_sequence_gives_finish_reason_stop(backend):
    prompt = replay_messages(1)[0][0]["content"]
    (free,) = backend.generate(requests_for([prompt], Sampling(6)))
    ids = backend.tokenizer(prompt)["input_ids"]
    with torch.inference_mode():
        first = int(backend.model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
    saved = (set(backend.eos_ids), backend.model.generation_config.eos_token_id)
    backend.eos_ids.add(first)
    backend.model.generation_config.eos_token_id = sorted(backend.eos_ids)
    try:
        (stopped,) = backend.generate(requests_for([prompt], Sampling(6)))
    finally:
        backend.eos_ids, backend.model.generation_config.eos_token_id = saved
    assert free.finish_reason == "length" and free.completion_tokens == 6
    assert (stopped.finish_reason, stopped.completion_tokens, stopped.prompt_tokens) == ("stop", 1, len(ids))


def test_failed_requests_are_reported_not_cached_and_retried(gen_wd, gen_tiny_model):
    messages = replay_messages(3)
    messages[1] = [{"role": "user", "content": "word " * 2100}]  # longer than the 2048-token context
    write_plan(gen_wd, messages)
    params = make_params(model=str(gen_tiny_model))
    with pytest.raises(GenerationError, match="1 of 3 requests failed .*context is 2048"):
        run_generate(params, gen_wd)
    summary = read_json(gen_wd.report("generate-summary.json"))
    assert (summary["generated"], summary["failed"]) == (2, 1)
    assert len(GenerationCache.of(gen_wd).read()) == 2
    with pytest.raises(GenerationError):
        run_generate(params, gen_wd)
    assert read_json(gen_wd.report("generate-summary.json"))["model_calls"] == 1
