"""Arrow schemas of the pipeline's tables (the row contract of ../DESIGN.md)."""

from __future__ import annotations

import pyarrow as pa

from ..tasks.labeling.conditions import CONDITION_COLUMNS
from ..tasks.sources.sections import STUDY_SECTIONS

MESSAGE_TYPE = pa.struct([("role", pa.string()), ("content", pa.string())])
MESSAGES = pa.list_(MESSAGE_TYPE)

# --- ingest ------------------------------------------------------------------------------------

REPORTS = pa.schema([
    ("subject_id", pa.int64()), ("study_id", pa.int64()), ("split", pa.string()),
    ("report_path", pa.string()), ("text_sha1", pa.string()),
    *[(name, pa.string()) for name in STUDY_SECTIONS],
    ("impression_source", pa.string()), ("has_findings", pa.bool_()), ("has_impression", pa.bool_()),
    ("n_images", pa.int32()),
])

IMAGES = pa.schema([
    ("dicom_id", pa.string()), ("subject_id", pa.int64()), ("study_id", pa.int64()),
    ("split", pa.string()), ("view_position", pa.string()), ("image_path", pa.string()),
    ("has_report", pa.bool_()),
])

NLE = pa.schema([
    ("sentence_id", pa.string()), ("study_id", pa.int64()), ("subject_id", pa.int64()),
    ("sentence_index", pa.int32()), ("nle", pa.string()), ("nle_split", pa.string()),
    ("diagnoses", pa.list_(pa.string())), ("evidence", pa.list_(pa.string())),
    ("img_labels", pa.list_(pa.int8())), ("text_source", pa.string()),
    ("resolved", pa.bool_()), ("in_findings", pa.bool_()),
])

RADRESTRUCT_QA = pa.schema([
    ("report_id", pa.string()), ("split", pa.string()), ("qa_index", pa.int32()),
    ("question", pa.string()), ("answers", pa.list_(pa.string())),
    ("history", pa.list_(pa.struct([("question", pa.string()), ("answers", pa.list_(pa.string()))]))),
    ("answer_type", pa.string()), ("options", pa.list_(pa.string())), ("path", pa.string()),
    ("image_ids", pa.list_(pa.string())), ("has_structured_report", pa.bool_()),
])

# --- label -------------------------------------------------------------------------------------

#: One row per study: the 14 condition values (1 / 0 / -1 / null) of the labelled text.
LABELS = pa.schema([
    ("study_id", pa.int64()), ("subject_id", pa.int64()), ("text_column", pa.string()),
    ("text_sha1", pa.string()),
    *[(name, pa.float32()) for name in CONDITION_COLUMNS],
    ("positive_findings", pa.list_(pa.string())), ("structured_findings", pa.string()),
    ("labeler", pa.string()), ("labeler_version", pa.string()),
])

# --- generation --------------------------------------------------------------------------------

#: One row per generated request in a cache chunk file.
GENERATION_CACHE = pa.schema([
    ("request_hash", pa.string()), ("text", pa.string()), ("finish_reason", pa.string()),
    ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()), ("latency_s", pa.float64()),
    ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()),
    ("sampling", pa.string()), ("seed", pa.int64()), ("template_version", pa.string()),
])

GENERATION_TYPE = pa.struct([
    ("backend", pa.string()), ("model", pa.string()), ("revision", pa.string()),
    ("sampling_params", pa.string()), ("seed", pa.int64()), ("request_hash", pa.string()),
    ("finish_reason", pa.string()), ("prompt_tokens", pa.int32()), ("completion_tokens", pa.int32()),
])

AUDIT_TYPE = pa.struct([
    ("verdict", pa.string()), ("reasons", pa.list_(pa.string())),
    ("source_findings", pa.list_(pa.string())), ("output_findings", pa.list_(pa.string())),
    ("kept", pa.list_(pa.string())), ("added", pa.list_(pa.string())), ("dropped", pa.list_(pa.string())),
    ("labeler", pa.string()),
])

#: A human decision on a replay row (``review`` of the sample row, and one row of
#: ``reviews/decisions.parquet``): accept releases a row the audit failed, reject excludes any row.
#: ``audit_verdict`` is the audit's verdict when the decision was made.
REVIEW_TYPE = pa.struct([
    ("decision", pa.string()), ("note", pa.string()), ("reviewer", pa.string()),
    ("decided_at", pa.timestamp("us", tz="UTC")), ("audit_verdict", pa.string()),
])

#: ``<workdir>/reviews/decisions.parquet``: every decision ever made, in the order made (append
#: only; the latest one per sample and answer wins). ``request_hash`` names the generated answer the
#: decision is about; ``origin`` is "web" or "csv:<file name>".
REVIEW_DECISIONS = pa.schema([
    pa.field("sample_id", pa.string(), nullable=False), pa.field("request_hash", pa.string(), nullable=False),
    pa.field("decision", pa.string(), nullable=False), pa.field("note", pa.string(), nullable=False),
    pa.field("reviewer", pa.string()), pa.field("decided_at", pa.timestamp("us", tz="UTC"), nullable=False),
    pa.field("audit_verdict", pa.string()), pa.field("origin", pa.string()),
])

# --- plan and samples --------------------------------------------------------------------------

def _required(name: str, type_: pa.DataType) -> pa.Field:
    return pa.field(name, type_, nullable=False)


#: Columns every sample row has; non-nullable fields are required (the validation suite is derived
#: from this nullability).
_SAMPLE_CORE = [
    _required("sample_id", pa.string()), _required("split", pa.string()), _required("task", pa.string()),
    pa.field("task_mode", pa.string()), _required("source", pa.string()), pa.field("source_ref", pa.string()),
    pa.field("subject_id", pa.int64()), pa.field("study_id", pa.int64()), _required("dicom_id", pa.string()),
    _required("image_path", pa.string()), pa.field("view_position", pa.string()),
    pa.field("structured_findings", pa.string()), pa.field("labeler", pa.string()),
    _required("history", MESSAGES), _required("messages", MESSAGES), _required("instruction", pa.string()),
    pa.field("output", pa.string()), _required("context_mode", pa.string()), _required("template_id", pa.string()),
    _required("is_pseudo_label", pa.bool_()),
]

#: Every sample decided before any model runs. Replay rows have ``output``/``messages`` without
#: the answer yet and carry ``gen_messages``: the conversation the generator answers.
PLAN = pa.schema(_SAMPLE_CORE + [
    ("sample_key", pa.string()), ("template_version", pa.string()), ("gen_messages", MESSAGES),
])

#: Version of the row contract below, recorded in every manifest. 1: the first release;
#: 2: ``review`` (the human decision applied to the row, null when there is none).
ROW_CONTRACT_VERSION = 2

#: The released row (``shards/<version>/<split>/part-NNNNN.parquet``); every row has its answer.
INSTRUCT_SAMPLE = pa.schema([f if f.name != "output" else _required("output", pa.string()) for f in _SAMPLE_CORE] + [
    pa.field("generation", GENERATION_TYPE), pa.field("audit", AUDIT_TYPE), pa.field("review", REVIEW_TYPE),
    _required("pipeline_version", pa.string()),
])

TABLES: dict[str, pa.Schema] = {
    "reports": REPORTS, "images": IMAGES, "nle": NLE, "radrestruct_qa": RADRESTRUCT_QA,
    "labels": LABELS, "plan": PLAN, "generation_cache": GENERATION_CACHE, "instruct_sample": INSTRUCT_SAMPLE,
    "review_decisions": REVIEW_DECISIONS,
}
