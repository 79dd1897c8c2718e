"""``review serve`` in a real headless browser: Debian's chromium driven through its chromedriver
(/usr/bin/chromedriver; selenium never downloads a browser or driver here). Load the list, filter
it, open a row, reject with a note and accept by keyboard, reload and see both decisions, and
find them in ``reviews/decisions.parquet``.

Screenshots go to ``$RADIALOG_SCREENSHOTS`` when that is set."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from radialog_instruct.tasks.quality.review.decisions import read_decisions
from radialog_instruct.tasks.workdir import Workdir

from audited_demo import audited_demo
from cli_process import free_port, wait_until_serving

pytestmark = pytest.mark.slow
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TASK = "summarization"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Workdir:
    return audited_demo(tmp_path_factory.mktemp("review-browser") / "work")[1]


@pytest.fixture(scope="module")
def server(workdir: Workdir) -> Iterator[str]:
    """``radialog-instruct review serve`` as a user starts it; yields its base URL."""
    port = free_port()
    command = [sys.executable, "-c", "from radialog_instruct.flows.cli import main; main()", "review", "serve",
               "--workdir", str(workdir.root), "--port", str(port), "--reviewer", "browser-test"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url + "/api/progress", process, 30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        message = "needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    folder = os.environ.get("RADIALOG_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(Path(folder) / f"{name}.png"))


def wait_for(driver: Any, condition: Any, what: str, timeout: float = 20) -> Any:
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # the page may be between two documents while it navigates after a key
    ignored = (NoSuchElementException, StaleElementReferenceException)
    return WebDriverWait(driver, timeout, ignored_exceptions=ignored).until(condition, message=f"waiting for {what}")


def press(driver: Any, keys: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains

    ActionChains(driver).send_keys(keys).perform()


def position(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.ID, "position").text


def test_filter_decide_by_keyboard_and_see_the_decisions_after_a_reload(workdir, server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    audit = pq.read_table(workdir.table("audit")).to_pylist()
    in_task = sorted(a["sample_id"] for a in audit if a["task"] == TASK)
    driver = browser
    driver.get(server + "/")
    assert "Rows" in driver.title
    assert driver.find_element(By.ID, "match-count").text == str(len(audit))
    assert len(driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr[data-sample-id]")) == min(len(audit), 50)
    assert f"0 / {len(audit)} reviewed" in driver.find_element(By.ID, "progress-text").text
    shot(driver, "list")

    Select(driver.find_element(By.NAME, "task")).select_by_value(TASK)
    driver.find_element(By.ID, "apply-filters").click()
    wait_for(driver, lambda d: f"task={TASK}" in d.current_url, "the filtered list")
    listed = [tr.get_attribute("data-sample-id") for tr in driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr")]
    assert driver.find_element(By.ID, "match-count").text == str(len(in_task))
    assert listed == in_task[:50]

    press(driver, "j")  # select the first row, open it with Enter
    press(driver, Keys.ENTER)
    wait_for(driver, lambda d: "/row?" in d.current_url, "the row page")
    assert position(driver) == f"row 1 of {len(in_task)}"
    first = driver.find_element(By.ID, "row").get_attribute("data-sample-id")
    assert first == in_task[0]
    assert driver.find_element(By.ID, "answer").text and driver.find_element(By.ID, "source").text
    shot(driver, "row")

    press(driver, "n")
    press(driver, "leaves out the effusion")
    press(driver, Keys.ESCAPE)
    press(driver, "r")
    wait_for(driver, lambda d: position(d) == f"row 2 of {len(in_task)}", "the next row after the reject")
    second = driver.find_element(By.ID, "row").get_attribute("data-sample-id")
    press(driver, "a")
    wait_for(driver, lambda d: position(d) == f"row 3 of {len(in_task)}", "the next row after the accept")
    press(driver, "k")
    wait_for(driver, lambda d: position(d) == f"row 2 of {len(in_task)}", "the previous row")
    assert "accept" in driver.find_element(By.ID, "current-decision").text
    assert driver.find_element(By.ID, "outcome").text.startswith("released: a person accepted it")
    press(driver, "k")
    wait_for(driver, lambda d: position(d) == f"row 1 of {len(in_task)}", "the first row again")
    assert driver.find_element(By.ID, "outcome").text == "excluded (review: leaves out the effusion)"
    assert driver.find_element(By.ID, "note").get_attribute("value") == "leaves out the effusion"

    press(driver, "l")
    wait_for(driver, lambda d: "/row?" not in d.current_url, "the list")
    driver.refresh()
    decisions = {tr.get_attribute("data-sample-id"): tr.find_element(By.CSS_SELECTOR, "td.decision").text
                 for tr in driver.find_elements(By.CSS_SELECTOR, "#rows tbody tr[data-sample-id]")}
    assert decisions[first] == "reject leaves out the effusion" and decisions[second] == "accept"
    assert sum(text != "–" for text in decisions.values()) == 2
    assert f"2 / {len(audit)} reviewed · 1 accepted · 1 rejected" in driver.find_element(By.ID, "progress-text").text
    shot(driver, "list-after")

    stored = read_decisions(workdir).to_pylist()
    hashes = {a["sample_id"]: a["request_hash"] for a in audit}
    verdicts = {a["sample_id"]: a["audit"]["verdict"] for a in audit}
    assert [(d["sample_id"], d["decision"], d["note"], d["reviewer"], d["origin"]) for d in stored] == [
        (first, "reject", "leaves out the effusion", "browser-test", "web"), (second, "accept", "", "browser-test", "web")]
    assert all(d["request_hash"] == hashes[d["sample_id"]] and d["audit_verdict"] == verdicts[d["sample_id"]]
               for d in stored)


def test_the_review_queue_starts_with_undecided_rows_of_every_stratum(workdir, server, browser):
    from selenium.webdriver.common.by import By

    driver = browser
    driver.get(server + "/")
    press(driver, "q")
    wait_for(driver, lambda d: "order=queue" in d.current_url, "the review queue")
    audit = pq.read_table(workdir.table("audit")).to_pylist()
    strata = {(a["task"], a["audit"]["verdict"]) for a in audit}
    decided = {d["sample_id"] for d in read_decisions(workdir).to_pylist()}
    seen = []
    for _ in range(len(strata)):
        row = driver.find_element(By.ID, "row")
        seen.append(row.get_attribute("data-sample-id"))
        press(driver, "j")
        wait_for(driver, lambda d, s=seen[-1]: d.find_element(By.ID, "row").get_attribute("data-sample-id") != s,
                 "the next queued row")
    by_id = {a["sample_id"]: (a["task"], a["audit"]["verdict"]) for a in audit}
    assert not decided & set(seen)
    assert {by_id[s] for s in seen} == strata  # one of each task × verdict first
    shot(driver, "queue")
