// Live pages: every 2 s while the body says data-live="true", fetch the page's live part
// (the same template the server rendered it with) and its figures, then stop once the
// server says the sweep or trial has ended. Plots are drawn by Plotly, loaded on demand.
"use strict";

const REFRESH_MS = 2000;
const axisTypes = {}; // plot id -> y axis type the user chose, kept across refreshes
let plotlyLoading = null;

function loadPlotly() {
  if (window.Plotly) return Promise.resolve();
  if (!plotlyLoading) {
    plotlyLoading = new Promise((resolve, reject) => {
      const script = document.createElement("script");
      script.src = "/vendor/plotly.min.js";
      script.onload = resolve;
      script.onerror = () => reject(new Error("could not load plotly.min.js"));
      document.head.appendChild(script);
    });
  }
  return plotlyLoading;
}

async function drawFigures(url) {
  const response = await fetch(url, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || response.statusText);
  await loadPlotly();
  for (const [id, figure] of Object.entries(body.figures)) {
    const element = document.getElementById(id);
    if (!element) continue;
    const layout = { ...figure.layout, uirevision: id };
    if (axisTypes[id]) layout.yaxis = { ...layout.yaxis, type: axisTypes[id] };
    await Plotly.react(element, figure.data, layout, { responsive: true, displaylogo: false });
    if (!element.dataset.clickable) {
      element.dataset.clickable = "1";
      element.on("plotly_click", (event) => {
        const trial = event.points && event.points[0] && event.points[0].customdata;
        if (Number.isInteger(trial)) window.location.href = "/trials/" + trial;
      });
    }
  }
  document.body.dataset.figuresDrawn = String(Number(document.body.dataset.figuresDrawn || 0) + 1);
  return body.live;
}

async function refreshPart(element) {
  const url = new URL(window.location.href);
  url.searchParams.set("part", "live");
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error("the server answered " + response.status);
  element.innerHTML = await response.text();
  return response.headers.get("X-Live") === "true";
}

function showError(error) {
  const status = document.getElementById("live-status");
  if (status) status.textContent = "update failed (" + error.message + "); retrying";
}

async function refresh(first) {
  const part = document.querySelector("[data-refresh]");
  const figures = document.body.dataset.figures;
  let live = false;
  try {
    const tasks = [];
    if (part && !first) tasks.push(refreshPart(part));
    if (figures) tasks.push(drawFigures(figures));
    const results = await Promise.all(tasks);
    live = results.some(Boolean) || (first && document.body.dataset.live === "true");
    document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
    const status = document.getElementById("live-status");
    if (status) status.textContent = live ? "live: updates every 2 s" : "";
  } catch (error) {
    showError(error);
    live = true; // a failed poll (e.g. the database restarting) is retried
  }
  document.body.dataset.live = live ? "true" : "false";
  if (live) window.setTimeout(() => refresh(false), REFRESH_MS);
}

document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-axis-plot]");
  if (!button) return;
  const id = button.dataset.axisPlot;
  axisTypes[id] = button.dataset.axisType;
  for (const other of document.querySelectorAll(`[data-axis-plot="${id}"]`)) {
    other.setAttribute("aria-pressed", String(other === button));
  }
  const element = document.getElementById(id);
  if (window.Plotly && element && element.data) Plotly.relayout(element, { "yaxis.type": axisTypes[id] });
});

document.addEventListener("DOMContentLoaded", () => refresh(true));
