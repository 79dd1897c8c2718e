"""The review decisions store (append only, latest per answer wins, crash-safe, concurrent saves),
the CSV import's checks on a small audit table, the audit-vs-human figures, and the review app's
filters and queue order."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from radialog_instruct import schemas
from radialog_instruct.tasks import io as tasks_io
from radialog_instruct.tasks.errors import InputError
from radialog_instruct.tasks.quality.audit import AUDIT_TABLE
from radialog_instruct.tasks.quality.review import decisions as store
from radialog_instruct.tasks.quality.review.agreement import audit_vs_human, card_lines
from radialog_instruct.tasks.quality.review.replay import Filters, queue_order
from radialog_instruct.tasks.quality.review.spreadsheet import import_csv
from radialog_instruct.tasks.workdir import Workdir


def decided(*rows: tuple[str, str, str, str]) -> pa.Table:
    """Decisions (sample id, request hash, decision, note) made by "t" on rows the audit failed."""
    ids, hashes, decisions, notes = (list(c) for c in zip(*rows))
    return store.new_decisions(ids, hashes, decisions, notes, ["t"] * len(rows), ["fail"] * len(rows), origin="test")


def test_latest_decision_about_an_answer_wins_in_append_order(tmp_path):
    wd = Workdir.at(tmp_path)
    store.append_decisions(wd, decided(("s1", "h1", "accept", "ok"), ("s2", "h2", "reject", "bad")))
    store.append_decisions(wd, decided(("s1", "h1", "reject", "on second thought")))
    history = store.read_decisions(wd)
    assert history.num_rows == 3 and history.schema.equals(schemas.REVIEW_DECISIONS)
    applied = store.for_rows(history, pa.array(["s1", "s2", "s3"]), pa.array(["h1", "h2", "h3"]))
    assert applied.column("decision").to_pylist() == ["reject", "reject", None]
    assert applied.column("note").to_pylist() == ["on second thought", "bad", None]
    structs = store.review_structs(applied).to_pylist()
    assert structs[0]["decision"] == "reject" and structs[0]["reviewer"] == "t" and structs[2] is None


def test_a_decision_about_an_earlier_answer_is_stale(tmp_path):
    wd = Workdir.at(tmp_path)
    store.append_decisions(wd, decided(("s1", "old-answer", "accept", "")))
    history = store.read_decisions(wd)
    ids, hashes = pa.array(["s1"]), pa.array(["new-answer"])
    assert store.for_rows(history, ids, hashes).column("decision").to_pylist() == [None]
    assert store.stale_samples(history, ids, hashes) == 1


def test_a_save_that_fails_leaves_the_previous_file(tmp_path, monkeypatch):
    wd = Workdir.at(tmp_path)
    store.append_decisions(wd, decided(("s1", "h1", "accept", "")))
    before = store.decisions_path(wd).read_bytes()

    def crash(table, where, **kwargs):
        Path(where).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tasks_io.pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.append_decisions(wd, decided(("s2", "h2", "reject", "")))
    assert store.decisions_path(wd).read_bytes() == before
    assert sorted(p.name for p in store.reviews_dir(wd).iterdir()) == [".decisions.lock", "decisions.parquet"]


def test_concurrent_saves_lose_no_decision(tmp_path):
    wd = Workdir.at(tmp_path)

    def save(worker: int) -> None:
        for k in range(5):
            store.append_decisions(wd, decided((f"s{worker}-{k}", "h", "accept", "")))

    threads = [threading.Thread(target=save, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ids = store.read_decisions(wd).column("sample_id").to_pylist()
    assert sorted(ids) == sorted(f"s{w}-{k}" for w in range(6) for k in range(5))


def test_only_accept_and_reject_are_decisions():
    with pytest.raises(ValueError, match="'maybe'"):
        decided(("s1", "h1", "maybe", ""))


# --- CSV import --------------------------------------------------------------------------------

@pytest.fixture
def audited(tmp_path) -> Workdir:
    """A work dir whose audit table holds three replay rows (two failed, one passed)."""
    wd = Workdir.at(tmp_path / "work")
    audit = [{"verdict": v, "reasons": [] if v == "pass" else ["truncated"], "source_findings": [],
              "output_findings": [], "kept": [], "added": [], "dropped": [], "labeler": "rules@x"}
             for v in ("fail", "fail", "pass")]
    wd.interim.mkdir(parents=True)
    pq.write_table(pa.Table.from_pydict({"sample_id": ["a1", "b2", "c3"], "task": ["summarization"] * 3,
                                         "request_hash": ["ha", "hb", "hc"], "audit": audit}, schema=AUDIT_TABLE),
                   wd.table("audit"))
    return wd


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_import_appends_in_file_order_with_the_audit_verdict(audited, tmp_path):
    sheet = write_csv(tmp_path / "d.csv", "Sample_ID,Decision,Note,reviewer,extra\n"
                      "a1,ACCEPT,fine,ann,x\nc3,reject,\"wrong, see \"\"effusion\"\"\",,y\nb2,,,,\na1,reject,no,,\n")
    result = import_csv(sheet, audited, reviewer="default")
    assert (result["imported"], result["accepted"], result["rejected"], result["skipped_blank"]) == (3, 1, 2, 1)
    rows = store.read_decisions(audited).to_pylist()
    assert [(r["sample_id"], r["decision"], r["note"], r["reviewer"]) for r in rows] == [
        ("a1", "accept", "fine", "ann"), ("c3", "reject", 'wrong, see "effusion"', "default"), ("a1", "reject", "no", "default")]
    assert [r["audit_verdict"] for r in rows] == ["fail", "pass", "fail"]
    assert {r["request_hash"] for r in rows if r["sample_id"] == "a1"} == {"ha"}
    assert {r["origin"] for r in rows} == {"csv:d.csv"}
    again = import_csv(sheet, audited, reviewer="default")  # c3 unchanged; a1 accepted, then rejected again
    assert again["skipped_unchanged"] == 1 and again["imported"] == 2
    history = store.read_decisions(audited)
    applied = store.for_rows(history, pa.array(["a1", "c3"]), pa.array(["ha", "hc"]))
    assert applied.column("decision").to_pylist() == ["reject", "reject"] and history.num_rows == 5


def test_bad_rows_are_reported_by_line_and_nothing_is_imported(audited, tmp_path):
    sheet = write_csv(tmp_path / "bad.csv", "sample_id,decision,note,request_hash\n"
                      "a1,accept,,ha\n\"zz\",accept,\"a note\nover two lines\",\nb2,maybe,,\nc3,reject,,stale-hash\n")
    with pytest.raises(InputError) as err:
        import_csv(sheet, audited, reviewer="t")
    message = str(err.value)
    assert "\n" not in message and "3 bad row(s), nothing imported" in message
    assert "line 3: unknown sample id 'zz'" in message
    assert "line 5: decision 'maybe' is not accept or reject" in message
    assert "line 6: the answer of c3 changed" in message
    assert not store.decisions_path(audited).exists()


def test_a_sheet_without_the_decision_column_is_refused(audited, tmp_path):
    with pytest.raises(InputError, match="no column decision"):
        import_csv(write_csv(tmp_path / "x.csv", "sample_id,verdict\na1,accept\n"), audited, reviewer="t")


# --- audit vs human ----------------------------------------------------------------------------

def test_agreement_precision_and_recall_of_fail_against_rejects():
    frame = pd.DataFrame({
        "task": ["summarization"] * 6 + ["region_qa"] * 2,
        "verdict": ["fail", "fail", "fail", "pass", "pass", "pass", "fail", "pass"],
        "decision": ["reject", "reject", "accept", "reject", "accept", None, None, None],
    })
    result = audit_vs_human(frame)
    su = result["tasks"]["summarization"]
    assert (su["rows"], su["reviewed"], su["tp"], su["fp"], su["fn"], su["tn"]) == (6, 5, 2, 1, 1, 1)
    assert (su["agreement"], su["precision"], su["recall"]) == (0.6, 0.6667, 0.6667)
    # strata fail (3 rows, 2/3 rejected) and pass (3 rows, 1/2 rejected): 2 and 1.5 rejects expected
    assert su["estimated"] == {"precision": 0.6667, "recall": round(2 / 3.5, 4), "agreement": round(3.5 / 6, 4)}
    rq = result["tasks"]["region_qa"]
    assert rq["reviewed"] == 0 and rq["precision"] is None and rq["estimated"]["recall"] is None
    assert result["all"]["reviewed"] == 5 and result["all"]["estimated"]["recall"] is None  # region_qa unreviewed
    card = "\n".join(card_lines(result, {"accepted_failed": 1, "rejected": 3}))
    assert "People reviewed 5 of the 8" in card and "| summarization | 5 / 6 | 2 / 3 | 60.0% (3/5)" in card
    assert "not measured" in "\n".join(card_lines(audit_vs_human(frame.assign(decision=None)), None))


def test_the_review_queue_takes_one_row_per_stratum_in_turn():
    codes = np.array([0, 0, 0, 1, 1, 2])  # e.g. summarization/fail, summarization/pass, region_qa/fail
    draws = np.array([0.5, 0.1, 0.9, 0.3, 0.2, 0.7])
    assert queue_order(codes, draws, np.arange(6)).tolist() == [1, 4, 5, 0, 3, 2]
    # built over the rows still selected: with 1 and 4 decided, the next round starts at once
    assert queue_order(codes, draws, np.array([0, 2, 3, 5])).tolist() == [0, 3, 5, 2]


def test_filters_by_reason_decision_and_free_text():
    audit_type = pa.struct([("verdict", pa.string()), ("reasons", pa.list_(pa.string()))])
    turns = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))
    table = pa.table({
        "sample_id": ["a", "b", "c", "d"], "task": ["summarization", "summarization", "region_qa", "correction"],
        "split": ["train", "test", "train", "train"], "verdict": ["fail", "fail", "pass", "fail"],
        "audit": pa.array([{"verdict": "fail", "reasons": ["echoed prompt", "dropped: Edema"]},
                           {"verdict": "fail", "reasons": ["not added: Edema"]},
                           {"verdict": "pass", "reasons": []},
                           {"verdict": "fail", "reasons": ["dropped: Fracture"]}], audit_type),
        "answer": ["Report: the heart", "Mild EDEMA.", None, "Clear."],
        "instruction": ["Summarize.", "Summarize.", "Is the heart normal?", "Correct it."],
        "gen_messages": pa.array([[{"role": "user", "content": "Report: heart"}], [], None,
                                  [{"role": "user", "content": "Report: rib fracture"}]], turns),
    })
    decisions = pa.array(["reject", None, "accept", None], pa.string())

    def chosen(**values: str) -> list[str]:
        return [s for s, keep in zip("abcd", Filters(**values).mask(table, decisions)) if keep]

    assert chosen(reason="dropped") == ["a", "d"] and chosen(reason="echoed prompt") == ["a"]
    assert chosen(reason="added") == []  # a category, not a substring of "not added"
    assert chosen(decision="undecided") == ["b", "d"] and chosen(decision="decided") == ["a", "c"]
    assert chosen(decision="reject", task="summarization") == ["a"]
    assert chosen(q="edema") == ["b"] and chosen(q="FRACTURE") == ["d"] and chosen(q="heart") == ["a", "c"]
    assert chosen(verdict="fail", split="train") == ["a", "d"]
    assert Filters(decision="undecided").keeps("accept") is False and Filters(task="x").keeps("reject")
