// bluegreen dashboard: draws /api/snapshot with Chart.js (and its annotation plugin for the gate
// runs' markers), again every few seconds. What it drew is summed up in data attributes, for a
// test or a benchmark to read: on <body> data-state (loading, drawn, error), data-panels,
// data-with-data (panels with data for every color), data-markers (gate runs on the time
// axis), data-marker-kinds, data-load-ms (from navigation to the first drawing), data-error;
// on each panel's <section> data-panel, data-colors (the colors with data), data-series and
// data-complete (yes: every color has data).
"use strict";

(function () {
  const COLORS = { blue: "#2f6fdb", green: "#2ca25f" };
  const PALETTE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
  const KINDS = {
    switched: "#2ca25f",
    "rolled-back": "#ff7f0e",
    refused: "#7f7f7f",
    inconclusive: "#d4a600",
    "bake-failed": "#d62728",
    failed: "#b22222",
  };
  const STATES = { UP: [], DOWN: [6, 3], MAINT: [2, 2], DRAIN: [10, 3], NOLB: [1, 4] };
  const body = document.body;
  const main = document.getElementById("panels");
  const message = document.getElementById("message");
  const charts = {};
  let range = "15m";
  let timer = null;
  let generation = 0;

  function colorOf(name) {
    if (COLORS[name]) return COLORS[name];
    let sum = 0;
    for (const c of name) sum += c.charCodeAt(0);
    return PALETTE[sum % PALETTE.length];
  }

  function clock(ms, seconds) {
    const d = new Date(ms);
    const two = (n) => String(n).padStart(2, "0");
    const text = `${two(d.getHours())}:${two(d.getMinutes())}`;
    return seconds ? `${text}:${two(d.getSeconds())}` : text;
  }

  function shown(unit, value) {
    if (value === null || value === undefined) return "–";
    if (unit === "s") return `${(value * 1000).toFixed(value < 0.01 ? 1 : 0)} ms`;
    if (unit === "reqps") return `${value.toFixed(value < 10 ? 2 : 0)}/s`;
    return String(Math.round(value));
  }

  function markerText(m) {
    return `${m.kind} → ${m.target}${m.tag ? " " + m.tag : ""}`;
  }

  function section(panel) {
    let box = document.querySelector(`section[data-panel="${panel.key}"]`);
    if (box) return box;
    box = document.createElement("section");
    box.dataset.panel = panel.key;
    box.innerHTML = '<h2></h2><div class="problem"></div><div class="chart"><canvas></canvas></div>';
    box.querySelector("h2").textContent = panel.title;
    main.appendChild(box);
    return box;
  }

  function datasets(panel) {
    return panel.series.map((s, index) => {
      const color = colorOf(s.color || s.name);
      const state = panel.key === "servers" ? s.name.split(" ").pop() : "";
      return {
        label: s.name,
        data: s.points.map(([t, v]) => ({ x: t * 1000, y: v })),
        borderColor: color,
        backgroundColor: panel.stacked ? color + "55" : color,
        borderDash: STATES[state] || [],
        fill: panel.stacked ? (index === 0 ? "origin" : "-1") : false,
        stepped: panel.key === "servers",
        pointRadius: 0,
        borderWidth: 1.6,
        spanGaps: false,
      };
    });
  }

  function annotations(markers, labelled) {
    const found = {};
    markers.forEach((m, i) => {
      found[`run${i}`] = {
        type: "line",
        scaleID: "x",
        value: m.time * 1000,
        borderColor: KINDS[m.kind] || "#1d2330",
        borderWidth: 2,
        borderDash: m.seen_in === "prometheus" ? [4, 4] : [],
        label: {
          display: labelled,
          content: markerText(m),
          position: "start",
          yAdjust: (i % 3) * 18, // runs close together: their labels one under another
          rotation: 0,
          font: { size: 10 },
          backgroundColor: KINDS[m.kind] || "#1d2330",
          padding: 3,
        },
      };
    });
    return found;
  }

  function chartFor(box, panel) {
    if (charts[panel.key]) return charts[panel.key];
    const seconds = range === "15m";
    charts[panel.key] = new Chart(box.querySelector("canvas"), {
      type: "line",
      data: { datasets: [] },
      options: {
        animation: false,
        maintainAspectRatio: false,
        parsing: false,
        normalized: true,
        interaction: { mode: "nearest", axis: "x", intersect: false },
        scales: {
          x: { type: "linear", ticks: { maxTicksLimit: 8, callback: (v) => clock(v, seconds) } },
          y: {
            stacked: panel.stacked,
            beginAtZero: true,
            ticks: { callback: (v) => shown(panel.unit, v), precision: panel.unit === "none" ? 0 : undefined },
          },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? clock(items[0].parsed.x, true) : ""),
              label: (item) => `${item.dataset.label}: ${shown(panel.unit, item.parsed.y)}`,
            },
          },
          annotation: { annotations: {} },
        },
      },
    });
    return charts[panel.key];
  }

  function drawRuns(markers) {
    const list = document.getElementById("runs");
    list.replaceChildren();
    for (const m of markers) {
      const item = document.createElement("li");
      item.dataset.kind = m.kind;
      item.dataset.target = m.target;
      if (m.tag) item.dataset.tag = m.tag;
      const swatch = document.createElement("span");
      swatch.className = "kind";
      swatch.style.background = KINDS[m.kind] || "#1d2330";
      item.append(swatch, `${clock(m.time * 1000, true)} ${markerText(m)}`);
      item.title = m.seen_in === "prometheus" ? "from bluegreen_gate_runs_total" : "from the history";
      list.appendChild(item);
    }
    if (!markers.length) list.innerHTML = "<li>none</li>";
  }

  function draw(doc) {
    message.hidden = true;
    main.hidden = false;
    body.removeAttribute("data-error");
    const markers = doc.markers.filter((m) => m.time >= doc.start && m.time <= doc.end);
    let complete = 0;
    doc.panels.forEach((panel, index) => {
      const box = section(panel);
      const problem = box.querySelector(".problem");
      problem.textContent = panel.error || "";
      const chart = chartFor(box, panel);
      chart.data.datasets = datasets(panel);
      chart.options.scales.x.min = doc.start * 1000;
      chart.options.scales.x.max = doc.end * 1000;
      chart.options.plugins.annotation.annotations = annotations(markers, index === 0);
      chart.update("none");
      const colors = new Set(
        panel.series.filter((s) => s.points.some(([, v]) => v !== null)).map((s) => s.color)
      );
      const all = doc.colors.every((c) => colors.has(c));
      box.dataset.colors = [...colors].sort().join(",");
      box.dataset.series = String(panel.series.length);
      box.dataset.complete = all ? "yes" : "no";
      if (all) complete += 1;
    });
    drawRuns(markers);
    document.getElementById("notes").textContent = (doc.notes || []).join(" · ");
    document.getElementById("updated").textContent =
      `Prometheus ${doc.prometheus} · ${clock(doc.end * 1000, true)} · every ${doc.refresh} s`;
    body.dataset.panels = String(doc.panels.length);
    body.dataset.withData = String(complete);
    body.dataset.markers = String(markers.length);
    body.dataset.markerKinds = [...new Set(markers.map((m) => m.kind))].sort().join(",");
    if (!body.dataset.loadMs) body.dataset.loadMs = String(Math.round(performance.now()));
    body.dataset.state = "drawn";
  }

  function fail(text) {
    message.replaceChildren();
    const head = document.createElement("strong");
    head.textContent = "No data to draw";
    message.append(head, text);
    message.hidden = false;
    main.hidden = true;
    body.dataset.error = text;
    body.dataset.state = "error";
    document.getElementById("updated").textContent = `failed at ${clock(Date.now(), true)}`;
  }

  async function refresh() {
    const mine = ++generation;
    clearTimeout(timer);
    let doc;
    try {
      const answer = await fetch(`/api/snapshot?range=${range}`, { cache: "no-store" });
      doc = await answer.json();
      if (!answer.ok && !doc.error) doc = { error: `the dashboard answered HTTP ${answer.status}` };
    } catch (error) {
      doc = { error: `the dashboard does not answer (${error.message})` };
    }
    if (mine !== generation) return; // a newer refresh (another range) is under way
    if (typeof Chart === "undefined") doc = { error: "the charting library did not load" };
    if (doc.error) fail(doc.error);
    else draw(doc);
    timer = setTimeout(refresh, (doc.refresh || 5) * 1000);
  }

  document.querySelectorAll("#ranges button").forEach((button) => {
    button.addEventListener("click", () => {
      range = button.dataset.range;
      document.querySelectorAll("#ranges button").forEach((b) => {
        b.setAttribute("aria-pressed", String(b === button));
      });
      for (const key of Object.keys(charts)) {
        charts[key].destroy();
        delete charts[key];
      }
      refresh();
    });
  });
  refresh();
})();
