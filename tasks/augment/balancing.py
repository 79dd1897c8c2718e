"""Balancing of Rad-ReStruct QA (RaDialog MIDL 2025, App. C.1: "the same number of positive and
negative samples for each question type").

Rule (the paper leaves it open): the question type is the QA pair's ``path`` in the report
template (e.g. ``lung_signs_opacity``). Positive/negative is defined for yes/no questions; within
each split and path the majority answer is downsampled at random (seeded per sample) to the count
of the minority answer, so a path with no "yes" sample in a split keeps none of its "no" samples
there. Splits are balanced separately: pooling them would let one split's answers decide what
another keeps. Attribute questions (body region, degree, ...) are asked only after a positive
answer and are kept as they are.
"""

from __future__ import annotations

import pandas as pd

from ..hashing import draws, key_hashes

YES_NO = frozenset({"yes", "no"})


def is_yes_no(options: list[str]) -> bool:
    return set(options) == YES_NO


def balance_yes_no(frame: pd.DataFrame, seed: int, *, key: str = "sample_key", group: tuple[str, ...] = ("split", "path")
                   ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Keep attribute rows; downsample yes/no rows to equal counts per ``group`` (columns)."""
    yes_no = frame["options"].map(is_yes_no)
    binary = frame[yes_no].copy()
    binary["_answer"] = binary["answers"].map(lambda a: a[0] if len(a) == 1 else "other")
    binary = binary[binary["_answer"].isin(YES_NO)]
    binary["_u"] = draws(seed, "rad_restruct_qa:balance", key_hashes(binary[key]))
    columns = list(group)
    binary = binary.sort_values([*columns, "_answer", "_u"], kind="stable")
    binary["_rank"] = binary.groupby([*columns, "_answer"]).cumcount()
    counts = binary.groupby([*columns, "_answer"]).size().unstack(fill_value=0)
    for col in YES_NO:
        if col not in counts:
            counts[col] = 0
    quota = counts[["yes", "no"]].min(axis=1).rename("_quota")
    keep = binary["_rank"].to_numpy() < binary.join(quota, on=columns)["_quota"].to_numpy()
    kept = binary[keep].drop(columns=["_answer", "_u", "_rank"])
    out = pd.concat([frame[~yes_no], kept]).sort_index(kind="stable")
    stats = {"yes_no_before": int(yes_no.sum()), "yes_no_kept": int(keep.sum()),
             "yes_kept": int((kept["answers"].map(tuple) == ("yes",)).sum()),
             "attribute_kept": int((~yes_no).sum())}
    return out, stats
