"""The OpenAI-compatible backend against a local HTTP server started by the test (loopback only)."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from radialog_instruct.tasks.errors import ConfigError
from radialog_instruct.tasks.generation.cache import GenerationCache
from radialog_instruct.tasks.generation.config import OpenAISettings
from radialog_instruct.tasks.generation.engine import Request, Sampling
from radialog_instruct.tasks.generation.models import ModelRef
from radialog_instruct.tasks.generation.openai_backend import OpenAIBackend
from radialog_instruct.tasks.generation.stage import run_generate
from radialog_instruct.tasks.text.conversation import load_conversation

from gen_fixtures import make_params, replay_messages, write_plan

pytest_plugins = ["gen_fixtures"]


@dataclass
class FakeServer:
    """A completions endpoint whose behaviour a prompt selects: FLAKY (503 once), BAD (400), SLOW
    (slower than the client timeout once), DOWN (500 always), REDIRECT (307 to ``redirect_to``)."""

    url: str = ""
    redirect_to: str = ""
    calls: list[dict] = field(default_factory=list)
    attempts: Counter = field(default_factory=Counter)
    in_flight: int = 0
    max_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, headers: dict, body: dict) -> tuple[int, dict]:
        prompt = body.get("prompt", "")
        with self.lock:
            self.calls.append({"path": path, "headers": headers, "body": body})
            self.attempts[prompt] += 1
            attempt = self.attempts[prompt]
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(1.0 if "SLOW" in prompt and attempt == 1 else 0.05)
            if "FLAKY" in prompt and attempt == 1:
                return 503, {"error": "overloaded"}
            if "BAD" in prompt:
                return 400, {"error": "bad request"}
            if "DOWN" in prompt:
                return 500, {"error": "down"}
            if "REDIRECT" in prompt:
                return 307, {"location": self.redirect_to}
            text = f" echo {prompt[-12:]}"
            return 200, {"choices": [{"text": text, "finish_reason": "length"}],
                         "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": body["max_tokens"]}}
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.fixture()
def servers() -> Iterator[tuple[FakeServer, FakeServer]]:
    """Two servers on 127.0.0.1: the configured one, and another that must never be contacted."""
    fakes, running = [], []
    for _ in range(2):
        fake = FakeServer()

        class Handler(BaseHTTPRequestHandler):
            fake_server = fake

            def do_POST(self) -> None:  # noqa: N802  (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                status, payload = self.fake_server.answer(self.path, dict(self.headers), body)
                self.send_response(status)
                if status == 307:
                    self.send_header("Location", payload["location"])
                data = json.dumps(payload).encode()
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        httpd.daemon_threads = True
        fake.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        fakes.append(fake)
        running.append(httpd)
    fakes[0].redirect_to = fakes[1].url + "/completions"
    yield fakes[0], fakes[1]
    for httpd in running:
        httpd.shutdown()
        httpd.server_close()


MODEL = ModelRef("lmsys/vicuna-7b-v1.5", "lmsys/vicuna-7b-v1.5", None, "default")


def openai_params(url: str | None, **openai: object):
    return make_params(model_preset="vicuna-7b-v1.5", backend="openai", openai={"base_url": url, **openai})


def test_stage_over_a_server_with_bounded_concurrency(gen_wd, servers, monkeypatch):
    server, other = servers
    monkeypatch.setenv("GEN_TEST_KEY", "sekret")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # proxies from the environment are ignored
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    messages = replay_messages(12)
    write_plan(gen_wd, messages)
    params = openai_params(server.url, api_key_env="GEN_TEST_KEY", concurrency=4)
    summary = run_generate(params, gen_wd)
    assert (summary["model_calls"], summary["generated"], summary["failed"]) == (12, 12, 0)
    assert summary["backend"] == "openai" and summary["completion_tokens"] == 12 * 8
    assert 2 <= server.max_in_flight <= 4
    assert not other.calls and {c["path"] for c in server.calls} == {"/v1/completions"}
    assert {c["headers"]["Authorization"] for c in server.calls} == {"Bearer sekret"}
    prompts = {load_conversation().render(m) for m in messages}
    bodies = [c["body"] for c in server.calls]
    assert {b["prompt"] for b in bodies} == prompts
    assert {(b["model"], b["max_tokens"], b["temperature"], b["top_p"], b["seed"]) for b in bodies} == {
        ("lmsys/vicuna-7b-v1.5", 8, 0.0, 1.0, 0)}
    cached = GenerationCache.of(gen_wd).read().to_pandas()
    assert len(cached) == 12 and set(cached["revision"]) == {"unknown"}
    assert run_generate(params, gen_wd)["model_calls"] == 0 and len(server.calls) == 12


def test_retries_timeouts_and_failures(servers):
    server, other = servers
    backend = OpenAIBackend(MODEL, OpenAISettings(base_url=server.url, concurrency=8, timeout_s=0.5,
                                                  max_retries=2), backoff_s=0.01)
    kinds = ["OK", "FLAKY", "SLOW", "BAD", "DOWN", "REDIRECT"]
    requests = [Request(kind, f"prompt {kind}", Sampling(5), 0, "1") for kind in kinds]
    results = {r.request_hash: r for r in backend.generate(requests)}
    assert sorted(results) == sorted(kinds)
    for kind in ("OK", "FLAKY", "SLOW"):
        assert results[kind].error is None and results[kind].text == f" echo prompt {kind}"
        assert (results[kind].finish_reason, results[kind].completion_tokens) == ("length", 5)
    assert server.attempts["prompt OK"] == 1
    assert server.attempts["prompt FLAKY"] == 2 and server.attempts["prompt SLOW"] == 2
    assert "HTTP 400" in results["BAD"].error and server.attempts["prompt BAD"] == 1
    assert "no answer after 3 attempts" in results["DOWN"].error and server.attempts["prompt DOWN"] == 3
    assert "HTTP 307" in results["REDIRECT"].error and not other.calls


def test_refuses_to_run_without_a_configured_server(gen_wd):
    with pytest.raises(ConfigError, match="base_url is not set"):
        run_generate(openai_params(None), gen_wd)  # before reading the plan or loading anything
    with pytest.raises(ConfigError, match="not an http"):
        OpenAIBackend(MODEL, OpenAISettings(base_url="ftp://example.org/v1"))
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        OpenAIBackend(MODEL, OpenAISettings(base_url="http://127.0.0.1:1/v1", api_key_env="NO_SUCH_KEY_VAR"))
