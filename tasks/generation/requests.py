"""The request stream: plan rows with ``gen_messages`` rendered into generator prompts and hashed.

A replay row's ``gen_messages`` (the conversation the generator answers) is rendered with the
build's conversation template (``conversation.yaml`` of ``plan.templates_dir``, else the packaged
Vicuna v1.1 one), ending in ``ASSISTANT:``. Every request carries the configured
``generate.seed``, so identical prompts get the same hash and are generated once.

Request hash recipe (version 1). The hash is the lowercase hex SHA-256 of the UTF-8 bytes of::

    json.dumps({"v": 1,
                "model": <model id: hub id, local folder as configured, or "demo-tiny">,
                "revision": <configured hub revision or "default"; a local folder's fingerprint;
                             "tiny-llama-seed0" for demo-tiny>,
                "sampling": <Sampling.to_json(), e.g. '{"max_new_tokens":256,"temperature":0.0,"top_p":1.0}'>,
                "seed": <int>,
                "template_version": <the plan row's template_version>,
                "conversation": "<conversation name>@<conversation version>",   # "vicuna_v1.1@1"
                "prompt": <the rendered prompt>},
               sort_keys=True, separators=(",", ":"), ensure_ascii=False)

The backend is not part of it: vLLM, transformers and a remote server fill the same cache.
Everything here is pure and cheap (no model is loaded), so the assemble stage recomputes the
hashes of the plan rows to look their results up.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ...schemas.tables import MESSAGES
from ..errors import InputError
from ..text.conversation import Conversation, load_conversation, params_conversation
from ..workdir import Workdir
from .config import GenerateConfig, load_config
from .engine import Request, Sampling
from .models import ModelRef, model_ref

HASH_VERSION = 1
PLAN_COLUMNS = ["sample_id", "template_version", "gen_messages"]
_PLAN_PART = pa.schema([("sample_id", pa.string()), ("template_version", pa.string()), ("gen_messages", MESSAGES)])


@dataclass(frozen=True)
class RequestSettings:
    """The model identity and decoding settings every request hash covers."""

    model: str
    revision: str
    sampling: Sampling
    seed: int

    @classmethod
    def of(cls, cfg: GenerateConfig, model: ModelRef) -> RequestSettings:
        return cls(model=model.name, revision=model.key_revision, sampling=Sampling.from_config(cfg),
                   seed=int(cfg.seed))


def request_settings(params: dict[str, Any], wd: Workdir) -> RequestSettings:
    """The settings of the configured generator (for the assemble stage; needs no model loading)."""
    cfg = load_config(params)
    return RequestSettings.of(cfg, model_ref(cfg, wd))


def conversation_id(conversation: Conversation) -> str:
    return f"{conversation.name}@{conversation.version}"


def _payload(settings: RequestSettings, prompt: str, template_version: str, conversation: Conversation) -> str:
    payload = {
        "v": HASH_VERSION, "model": settings.model, "revision": settings.revision,
        "sampling": settings.sampling.to_json(), "seed": int(settings.seed),
        "template_version": str(template_version), "conversation": conversation_id(conversation),
        "prompt": prompt,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def request_hash(settings: RequestSettings, prompt: str, template_version: str,
                 conversation: Conversation | None = None) -> str:
    text = _payload(settings, prompt, template_version, conversation or load_conversation())
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _column_hashes(plan: pa.Table, settings: RequestSettings, conversation: Conversation) -> list[str | None]:
    """:func:`request_hash` of every row with ``gen_messages``, column-wise: the prompts rendered
    and JSON-escaped as arrays, put between the constant parts of the payload text (the payload
    of :func:`_payload` cut at two placeholder values), then one SHA-256 per row."""
    from ..instruct.columns import concat, json_escape, parts_of, render_turns

    replay = pc.indices_nonzero(plan.column("gen_messages").is_valid())
    rows = plan.select(["sample_id", "template_version", "gen_messages"]).take(replay)
    turns = parts_of(rows.column("gen_messages"))
    offsets, roles, _ = turns
    lengths = np.diff(offsets)
    last_user = np.zeros(len(lengths), dtype=bool)
    last_user[lengths > 0] = np.asarray(pc.equal(roles, "user").to_numpy(zero_copy_only=False),
                                        dtype=bool)[offsets[1:][lengths > 0] - 1]
    for bad, problem, expected in ((~last_user, "gen_messages must end with a user turn",
                                    "the conversation the generator answers"),
                                   (np.asarray(rows.column("template_version").is_null().to_numpy(zero_copy_only=False),
                                               dtype=bool), "a replay row has no template_version", None)):
        if bad.any():
            raise InputError("plan", problem, record=str(rows.column("sample_id")[int(np.argmax(bad))].as_py()),
                             expected=expected)
    head, middle, tail = _placeholder_parts(settings, conversation)
    texts = concat(head, json_escape(render_turns(*turns, conversation)), middle,
                   json_escape(rows.column("template_version")), tail)
    data, ends = texts.buffers()[2], np.frombuffer(texts.buffers()[1], dtype=np.int32, count=len(texts) + 1,
                                                     offset=texts.offset * 4)
    view, sha = memoryview(data) if data is not None else memoryview(b""), hashlib.sha256
    hashes = [sha(view[a:b]).hexdigest() for a, b in zip(ends[:-1].tolist(), ends[1:].tolist())]
    out: list[str | None] = [None] * plan.num_rows
    for i, h in zip(replay.to_pylist(), hashes):
        out[i] = h
    return out


def _placeholder_parts(settings: RequestSettings, conversation: Conversation) -> tuple[str, str, str]:
    """The payload text around its prompt and its template version (placeholders \x00, \x01)."""
    text = _payload(settings, "\x00", "\x01", conversation)
    prompt_at, version_at = text.index('"\\u0000"'), text.index('"\\u0001"')
    return text[:prompt_at + 1], text[prompt_at + 7:version_at + 1], text[version_at + 7:]


def _column(plan: pa.Table | pd.DataFrame, name: str) -> list[Any]:
    if isinstance(plan, pa.Table):
        return plan.column(name).to_pylist() if name in plan.column_names else [None] * plan.num_rows
    return plan[name].tolist() if name in plan.columns else [None] * len(plan)


def _messages(cell: Any) -> list[dict[str, str]] | None:
    """A ``gen_messages`` cell (list, numpy array of dicts, None or NaN) as a list of dicts."""
    if cell is None or isinstance(cell, float):
        return None
    return [{"role": m["role"], "content": m["content"]} for m in cell]


def _rendered(plan: pa.Table | pd.DataFrame, conversation: Conversation) -> list[tuple[str, str] | None]:
    """(prompt, template_version) per plan row; None for rows without ``gen_messages``."""
    out: list[tuple[str, str] | None] = []
    rows = zip(_column(plan, "sample_id"), _column(plan, "template_version"), _column(plan, "gen_messages"))
    for sample_id, version, cell in rows:
        messages = _messages(cell)
        if messages is None:
            out.append(None)
            continue
        if not messages or messages[-1]["role"] != "user":
            raise InputError("plan", "gen_messages must end with a user turn", record=str(sample_id),
                             expected="the conversation the generator answers")
        if version is None:
            raise InputError("plan", "a replay row has no template_version", record=str(sample_id))
        out.append((conversation.render(messages), str(version)))
    return out


def request_hashes(plan: pa.Table | pd.DataFrame, settings: RequestSettings | Mapping[str, Any],
                   wd: Workdir | None = None, *, conversation: Conversation | None = None) -> list[str | None]:
    """The request hash of every plan row, row-aligned; None for rows that are not replay rows.

    ``settings`` is a :class:`RequestSettings` (prompts rendered with ``conversation``, default the
    packaged one), or the params together with the work dir (a local or demo model's identity is
    read from its folder; the conversation is the build's)."""
    if not isinstance(settings, RequestSettings):
        if wd is None:
            raise TypeError("request_hashes(plan, params, wd): the work dir is needed with params")
        conversation = params_conversation(dict(settings))
        settings = request_settings(dict(settings), wd)
    conversation = conversation or load_conversation()
    if not isinstance(plan, pa.Table):
        plan = pa.Table.from_pandas(plan.reindex(columns=PLAN_COLUMNS), schema=_PLAN_PART, preserve_index=False)
    return _column_hashes(plan, settings, conversation)


def build_requests(plan: pa.Table | pd.DataFrame, settings: RequestSettings,
                   conversation: Conversation | None = None) -> tuple[list[Request], int]:
    """The distinct requests of the plan, sorted by prompt (shared prefixes end up adjacent, which
    is what prefix caching and batching want), and the number of replay rows they came from.
    ``conversation`` renders the prompts (default: the packaged one)."""
    conversation = conversation or load_conversation()
    suffix = "/" + conversation_id(conversation)
    unique: dict[str, Request] = {}
    rows = 0
    for item in _rendered(plan, conversation):
        if item is None:
            continue
        rows += 1
        prompt, version = item
        key = request_hash(settings, prompt, version, conversation)
        if key not in unique:
            unique[key] = Request(key, prompt, settings.sampling, settings.seed, version + suffix)
    return sorted(unique.values(), key=lambda r: (r.prompt, r.request_hash)), rows


def shard_requests(requests: Sequence[Request], shard: tuple[int, int] | None) -> list[Request]:
    """The requests of shard ``i`` of ``n`` (``int(hash[:15], 16) % n == i``; None = all)."""
    if shard is None:
        return list(requests)
    index, count = shard
    return [r for r in requests if int(r.request_hash[:15], 16) % count == index]
