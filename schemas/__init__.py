"""Arrow schemas of every table the pipeline writes, and their JSON Schema export.

The schemas are the contract between stages: ingest tables (``reports``, ``images``, ``nle``,
``radrestruct_qa``), ``labels``, ``plan``, the generation cache chunks, the instruct sample
shards and the human review decisions. ``python -m radialog_instruct.schemas`` rewrites ``schemas/json/*.json``.
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
    REVIEW_DECISIONS,
    REVIEW_TYPE,
    ROW_CONTRACT_VERSION,
    TABLES,
)

__all__ = ["AUDIT_TYPE", "GENERATION_CACHE", "GENERATION_TYPE", "IMAGES", "INSTRUCT_SAMPLE", "LABELS",
           "MESSAGE_TYPE", "NLE", "PLAN", "RADRESTRUCT_QA", "REPORTS", "REVIEW_DECISIONS", "REVIEW_TYPE",
           "ROW_CONTRACT_VERSION", "TABLES"]
