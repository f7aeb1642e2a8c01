// The class's live page: polls /state.json and redraws; every value is put in
// the page as text (textContent), never as markup: job names are the users'.
"use strict";
(function () {
  const PERIOD_MS = 2000;
  let paused = false;
  let lastTimeline = "";

  function $(id) { return document.getElementById(id); }

  function fill(tableId, rows, cells) {
    const body = $(tableId).tBodies[0];
    const fresh = document.createElement("tbody");
    for (const row of rows) {
      const tr = document.createElement("tr");
      cells(row).forEach(function (value, i) {
        const td = document.createElement(i === 0 ? "th" : "td");
        if (i === 0) { td.scope = "row"; }
        td.textContent = value === null || value === undefined ? "" : String(value);
        tr.appendChild(td);
      });
      fresh.appendChild(tr);
    }
    body.replaceWith(fresh);
  }

  function stateClass(state) {
    const s = String(state || "");
    if (/down|fail|not_responding/.test(s)) { return "state-down"; }
    if (/drain/.test(s)) { return "state-drain"; }
    return s.indexOf("idle") === 0 ? "state-idle" : "";
  }

  function render(d) {
    $("cluster").textContent = "cluster " + d.cluster + " (Slurm " + d.slurm + ")";
    $("viewer").textContent = d.viewer === "instructor" ? "Instructor's view." : "Your view, " + d.viewer + ".";
    const age = Math.max(0, Date.now() / 1000 - d.updated);
    $("updated").textContent = "Data from " + new Date(d.updated * 1000).toLocaleTimeString() +
      " (" + age.toFixed(0) + " s ago).";
    const problems = $("problems");
    problems.hidden = !d.errors.length;
    problems.textContent = d.errors.length ? "Not all of it could be read: " + d.errors.join("; ") : "";

    const faults = $("faults-list");
    const items = d.faults.length ? d.faults : [{ what: "none", how: "every node and service is up" }];
    const fresh = document.createElement("ul");
    fresh.id = "faults-list";
    fresh.setAttribute("aria-live", "polite");
    for (const f of items) {
      const li = document.createElement("li");
      li.textContent = f.what + ": " + f.how;
      if (!d.faults.length) { li.className = "none"; }
      fresh.appendChild(li);
    }
    if (fresh.textContent !== faults.textContent) { faults.replaceWith(fresh); }

    fill("nodes", d.nodes, function (n) {
      return [n.name, n.state, (n.alloc_cpus || 0) + " of " + n.cpus,
              (n.alloc_memory_mb || 0) + " of " + n.memory_mb, n.partitions, n.reason];
    });
    $("nodes").tBodies[0].querySelectorAll("tr").forEach(function (tr, i) {
      tr.children[1].className = stateClass(d.nodes[i].state);
    });

    if (d.viewer === "instructor") {
      $("others").textContent = "";
      $("queue").hidden = false;
      fill("queue", d.queue, function (q) { return [q.user, q.running, q.pending]; });
      $("jobs-caption").textContent = "Jobs running and pending (every user's)";
    } else {
      $("queue").hidden = true;
      $("others").textContent = "Other users' jobs: " + d.others.running + " running, " +
        d.others.pending + " pending.";
      $("jobs-caption").textContent = "Your jobs running and pending";
    }
    fill("jobs", d.jobs, function (j) { return [j.id, j.user, j.name, j.state, j.reason, j.nodes]; });

    const img = $("timeline");
    img.alt = d.alt;
    const key = JSON.stringify(d.bars) + Math.floor(d.updated / 10);
    if (key !== lastTimeline) { lastTimeline = key; img.src = "/timeline.svg?t=" + Math.floor(d.updated); }

    $("nfs").textContent = d.nfs.lines.join("\n");
    fill("scratch", d.scratch, function (s) {
      return s.error ? [s.node, s.error, "", ""] : [s.node, s.used_mb, s.free_mb, s.size_mb];
    });
    function limit(v) { return v === null ? "no limit" : v; }
    fill("partitions", d.partitions, function (p) {
      return [p.name, p.nodes, p.state, limit(p.max_time_min), p.qos];
    });
    fill("qos", d.qos, function (q) { return [q.name, q.priority, limit(q.max_wall_min), q.description]; });
    document.body.dataset.updated = String(d.updated);
  }

  async function poll() {
    if (!paused) {
      try {
        const r = await fetch("/state.json", { credentials: "same-origin", cache: "no-store" });
        if (r.ok) {
          render(await r.json());
        } else {
          $("problems").hidden = false;
          $("problems").textContent = "The page's server said " + r.status + ": " + (await r.text());
        }
      } catch (e) {
        $("problems").hidden = false;
        $("problems").textContent = "The page's server does not answer (is minihpc class page running?)";
      }
    }
    setTimeout(poll, PERIOD_MS);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const pause = $("pause");
    pause.addEventListener("click", function () {
      paused = !paused;
      pause.setAttribute("aria-pressed", String(paused));
      pause.textContent = paused ? "Resume refreshing" : "Pause refreshing";
    });
    poll();
  });
}());
