"""The plan stage: the ten task builders turn ingested tables into planned instruct rows.

:mod:`.plan` runs the builders of the preset (:mod:`.presets`) over the inputs (:mod:`.inputs`),
with prompt templates from :mod:`.templates` and shared helpers in :mod:`.base`; the replay tasks
(:mod:`.replay`, :mod:`.correction`) leave their answers to the generate stage. :mod:`.fidelity`
holds where the original scripts wrote the v1 records differently (``plan.fidelity: original``),
:mod:`.import_original` reads the original prompts from a RaDialog checkout (``import-prompts``).
"""
