"""Prefect flows (one per stage, plus ``build``) and the ``radialog-instruct`` CLI.

Orchestration only: every flow calls a stage function from ``tasks/`` and the stage-stamp check
(:mod:`radialog_instruct.tasks.stage`) that decides whether the stage has to run.
"""
