// radialog-instruct review: keyboard and saves. Plain JS, no libraries, nothing from the network.
(function () {
  "use strict";
  const row = document.getElementById("row");
  const rows = document.getElementById("rows");
  const help = document.getElementById("help");
  const note = document.getElementById("note");
  const status = document.getElementById("status");

  function typing(target) {
    return target instanceof HTMLElement && (target.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(target.tagName));
  }

  function go(url) { if (url) { window.location.href = url; } }

  function decide(decision) {
    if (!row || row.dataset.busy) { return; }
    row.dataset.busy = "1";
    status.className = "";
    status.textContent = "saving " + decision + "…";
    fetch("/api/decisions", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ sample_id: row.dataset.sampleId, decision: decision, note: note ? note.value : "" }),
    }).then(function (response) {
      if (!response.ok) {
        return response.text().then(function (text) { throw new Error(response.status + " " + text); });
      }
      return response.json();
    }).then(function (saved) {
      status.textContent = "saved: " + saved.decision;
      go(decision === "accept" ? row.dataset.afterAccept : row.dataset.afterReject);
    }).catch(function (error) {
      delete row.dataset.busy;
      status.className = "error";
      status.textContent = "not saved: " + error.message;
    });
  }

  function moveSelection(step) {
    const items = Array.from(rows.querySelectorAll("tbody tr[data-url]"));
    if (!items.length) { return; }
    const current = items.findIndex(function (tr) { return tr.classList.contains("selected"); });
    const next = Math.min(Math.max(current + step, 0), items.length - 1);
    items.forEach(function (tr) { tr.classList.remove("selected"); });
    items[next].classList.add("selected");
    items[next].scrollIntoView({ block: "nearest" });
  }

  document.addEventListener("click", function (event) {
    const button = event.target.closest("[data-decision], [data-action='help']");
    if (!button) { return; }
    if (button.dataset.action === "help") { help.hidden = !help.hidden; } else { decide(button.dataset.decision); }
  });

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) { return; }
    if (typing(event.target)) {
      if (event.key === "Escape") { event.target.blur(); }
      return;
    }
    const key = event.key;
    if (key === "?") { help.hidden = !help.hidden; return; }
    if (key === "Escape") { help.hidden = true; return; }
    if (row) {
      if (key === "a") { decide("accept"); }
      else if (key === "r") { decide("reject"); }
      else if (key === "n") { event.preventDefault(); note.focus(); }
      else if (key === "j" || key === "ArrowRight") { go(row.dataset.next); }
      else if (key === "k" || key === "ArrowLeft") { go(row.dataset.prev); }
      else if (key === "l") { go(row.dataset.list); }
      return;
    }
    const done = document.getElementById("done");
    if (done && key === "l") { go(done.dataset.list); return; }
    if (rows) {
      if (key === "j" || key === "ArrowDown") { event.preventDefault(); moveSelection(1); }
      else if (key === "k" || key === "ArrowUp") { event.preventDefault(); moveSelection(-1); }
      else if (key === "Enter" || key === "o") {
        const selected = rows.querySelector("tr.selected");
        if (selected) { go(selected.dataset.url); }
      }
      else if (key === "/") { event.preventDefault(); document.getElementById("q").focus(); }
      else if (key === "q") { go(document.getElementById("start-queue").href); }
    }
  });
})();
