"""Human review of the pseudo labels: decisions as data, and how far the audit can be trusted.

* :mod:`.decisions` — the append-only store ``<workdir>/reviews/decisions.parquet`` and which
  decision applies to which row (the assemble stage honours them);
* :mod:`.replay` — the audited replay rows of a work dir as one Arrow table (plan + generation
  cache + audit), with filters and the stratified review queue;
* :mod:`.agreement` — audit vs. human per task: agreement, the audit's precision and recall;
* :mod:`.spreadsheet` — ``review import`` / ``review export`` (CSV);
* :mod:`.highlight` — where the findings are mentioned in a text;
* :mod:`.app` — ``review serve``, the local web app (FastAPI + Jinja2 templates + vanilla JS).
"""
