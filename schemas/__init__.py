"""Arrow schemas of every table the pipeline writes, and their JSON Schema export.

The schemas are the contract between stages: ingest tables (``reports``, ``images``, ``nle``,
``radrestruct_qa``), ``labels``, ``plan``, the generation cache chunks and the instruct sample
shards. ``python -m radialog_instruct.schemas`` rewrites ``schemas/json/*.json``.
"""

from .tables import (
    AUDIT_TYPE,
    GENERATION_CACHE,
    GENERATION_TYPE,
    IMAGES,
    INSTRUCT_SAMPLE,
    LABELS,
    MESSAGE_TYPE,
    NLE,
    PLAN,
    RADRESTRUCT_QA,
    REPORTS,
    TABLES,
)

__all__ = ["AUDIT_TYPE", "GENERATION_CACHE", "GENERATION_TYPE", "IMAGES", "INSTRUCT_SAMPLE", "LABELS",
           "MESSAGE_TYPE", "NLE", "PLAN", "RADRESTRUCT_QA", "REPORTS", "TABLES"]
