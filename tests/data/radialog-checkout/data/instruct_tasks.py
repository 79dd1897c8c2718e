"""Fixture: the shapes of the original data/instruct_tasks.py that import-prompts parses (own strings)."""
from create_data import Conversation, SeparatorStyle


def create_conv():
    return Conversation(
        system="You are a careful radiology assistant talking with a clinician. "
               "Answer briefly and precisely.",
        roles=["CLINICIAN", "ASSISTANT"],
        messages=[],
        offset=0,
        sep_style=SeparatorStyle.TWO,
        sep=" ",
        sep2="</s>",
    )


def create_direct_task_data(reports, prompts):
    out = []
    for text_target, prompt in zip(reports, prompts):
        conv = create_conv()
        conv.append_message(conv.roles[0], "Findings text: " + text_target + "\n" + prompt)
        conv.append_message(conv.roles[1], None)
        out.append(conv)
    return out


def create_correction_task_data(batch):
    fixed = []
    for fp, fn in zip(batch["fp"], batch["fn"]):
        fixed_corr_prompt = "Rewrite the report. "
        if fp != "":
            fixed_corr_prompt += f"Leave out {fp}. "
        if fn != "":
            fixed_corr_prompt += f"Include {fn}. "
        if fp == "" and fn == "":
            fixed_corr_prompt = "NOCHANGE"
        fixed.append(fixed_corr_prompt.strip())
    convs = []
    for pred_report, prompt in zip(batch["pred_report"], fixed):
        conv = create_conv()
        conv.append_message(conv.roles[0], "Write the report for this chest film.")
        conv.append_message(conv.roles[1], pred_report)
        conv.append_message(conv.roles[0], prompt)
        convs.append(conv)
    return convs
