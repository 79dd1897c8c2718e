"""The generate stage: pseudo ground truth for the replay tasks from a non-fine-tuned Vicuna.

- :mod:`.requests` renders the plan's ``gen_messages`` into prompts and hashes them (pure, cheap;
  the assemble stage uses :func:`.requests.request_hashes` and
  :meth:`.cache.GenerationCache.lookup`);
- :mod:`.engine` is the ``generate(requests) -> results`` interface; :mod:`.vllm_backend`,
  :mod:`.transformers_backend` and :mod:`.openai_backend` implement it (imported lazily);
- :mod:`.cache` is the content-addressed chunked result cache; :mod:`.stage` runs the stage.
"""
