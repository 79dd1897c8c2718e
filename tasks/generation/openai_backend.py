"""OpenAI-compatible backend: a running ``vllm serve`` (or any server with ``/v1/completions``).

Prompts are MIMIC text, so this backend talks to exactly one host: ``generate.openai.base_url``.
It refuses to start without it and has no default; it follows no redirects and ignores proxy
environment variables, so nothing is sent anywhere else. An API key is read from the
environment variable named by ``api_key_env`` (never from params.yaml).

Requests are plain completions of the rendered Vicuna prompt (``POST <base_url>/completions``
with model, prompt, max_tokens, temperature, top_p, seed), sent asynchronously with at most
``concurrency`` in flight. Timeouts, connection errors and HTTP 408/409/425/429/5xx are retried
up to ``max_retries`` times with exponential backoff and jitter; other errors, and requests that
still fail, come back as failed results (not cached; a rerun retries them). Start the server
with ``--generation-config vllm`` so the model's sampling defaults do not mix in.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from ..errors import ConfigError
from .config import OpenAISettings
from .engine import Request, Result
from .models import ModelRef, resolved_revision

RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_BACKOFF_S = 30.0


def completions_url(base_url: str | None) -> str:
    if not base_url:
        raise ConfigError("params: generate.openai.base_url is not set; the openai backend sends prompts only "
                          "to a server you configure (e.g. http://gpu-node:8000/v1)")
    url = httpx.URL(base_url)
    if url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"params: generate.openai.base_url {base_url!r} is not an http(s) URL")
    return base_url.rstrip("/") + "/completions"


class OpenAIBackend:
    name = "openai"

    def __init__(self, model: ModelRef, settings: OpenAISettings, *, backoff_s: float = 0.5):
        self.url = completions_url(settings.base_url)
        self.headers = {}
        if settings.api_key_env:
            key = os.environ.get(settings.api_key_env)
            if not key:
                raise ConfigError(f"params: generate.openai.api_key_env names {settings.api_key_env!r}, "
                                  "which is not set in the environment")
            self.headers["Authorization"] = f"Bearer {key}"
        self.model = model.name
        self.revision = resolved_revision(model) if model.is_local else (model.revision or "unknown")
        self.concurrency = settings.concurrency
        self.timeout_s = settings.timeout_s
        self.max_retries = settings.max_retries
        self.backoff_s = backoff_s

    def generate(self, requests: Sequence[Request]) -> Iterator[Result]:
        loop = asyncio.new_event_loop()
        client = httpx.AsyncClient(timeout=self.timeout_s, headers=self.headers, follow_redirects=False,
                                   trust_env=False, limits=httpx.Limits(max_connections=self.concurrency))
        queue = iter(requests)
        running: set[asyncio.Task[Result]] = set()
        try:
            while True:
                while len(running) < self.concurrency and (request := next(queue, None)) is not None:
                    running.add(loop.create_task(self._complete(client, request)))
                if not running:
                    return
                done, running = loop.run_until_complete(asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED))
                for task in done:
                    yield task.result()
        finally:
            for task in running:
                task.cancel()
            if running:
                loop.run_until_complete(asyncio.wait(running))
            loop.run_until_complete(client.aclose())
            loop.close()

    def close(self) -> None:
        """Nothing to release: each ``generate`` call opens and closes its own client."""

    def _payload(self, request: Request) -> dict[str, Any]:
        s = request.sampling
        return {"model": self.model, "prompt": request.prompt, "max_tokens": s.max_new_tokens,
                "temperature": s.temperature, "top_p": s.top_p, "seed": request.seed, "n": 1, "stream": False}

    async def _complete(self, client: httpx.AsyncClient, request: Request) -> Result:
        started = time.perf_counter()
        payload = self._payload(request)
        error = ""
        for attempt in range(self.max_retries + 1):
            if attempt:
                delay = min(self.backoff_s * 2 ** (attempt - 1), MAX_BACKOFF_S)
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                response = await client.post(self.url, json=payload)
            except httpx.TransportError as err:
                error = f"{type(err).__name__}: {err}"
                continue
            if response.status_code in RETRY_STATUS:
                error = f"HTTP {response.status_code}: {response.text[:200]}"
                continue
            return self._parse(request, response, time.perf_counter() - started)
        return Result.failed(request.request_hash, f"no answer after {self.max_retries + 1} attempts ({error})",
                             time.perf_counter() - started)

    @staticmethod
    def _parse(request: Request, response: httpx.Response, latency: float) -> Result:
        if response.status_code != 200:
            return Result.failed(request.request_hash, f"HTTP {response.status_code}: {response.text[:200]}", latency)
        try:
            data = response.json()
            choice = data["choices"][0]
            usage = data.get("usage") or {}
            text, reason = str(choice["text"]), choice.get("finish_reason")
            prompt_tokens, completion_tokens = int(usage["prompt_tokens"]), int(usage["completion_tokens"])
        except (ValueError, KeyError, IndexError, TypeError) as err:
            return Result.failed(request.request_hash, f"malformed completion response ({err!r})", latency)
        if reason not in ("stop", "length"):
            return Result.failed(request.request_hash, f"unexpected finish_reason {reason!r}", latency)
        return Result(request.request_hash, text, reason, prompt_tokens, completion_tokens, latency)
