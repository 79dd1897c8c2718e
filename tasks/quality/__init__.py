"""Trust in the data: the validate stage (Great Expectations suites over the shards:
:mod:`.expectations`, :mod:`.validate`) and the audit stage (re-labelling pseudo labels and judging
their faithfulness to the report: :mod:`.audit`, :mod:`.verdicts`, :mod:`.audit_report`), and the
human review of the pseudo labels (:mod:`.review`: decisions, the review app, audit vs. human)."""
