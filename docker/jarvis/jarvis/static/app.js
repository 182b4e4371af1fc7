// Jarvis UI: talks to this color's API through the frontend's /api/* proxy.
"use strict";

const $ = (id) => document.getElementById(id);

const JSON_HEADERS = { "Content-Type": "application/json", Accept: "application/json" };

async function parse(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

const api = (path, options = {}) => fetch(path, { headers: JSON_HEADERS, ...options }).then(parse);

function status(text, isError = false) {
  $("api-status").textContent = text;
  $("api-status").className = isError ? "error" : "";
}

async function loadItems() {
  try {
    const { items } = await fetch('/api/items', { headers: JSON_HEADERS }).then(parse);
    $("items").replaceChildren(
      ...items.map((item) => {
        const li = document.createElement("li");
        li.textContent = `#${item.id} ${item.name} (${item.color} ${item.version})`;
        return li;
      }),
    );
    status("API ok");
  } catch (err) {
    status(`API error: ${err.message}`, true);
  }
}

async function addItem(event) {
  event.preventDefault();
  const name = $("item-name").value.trim();
  if (!name) return;
  try {
    await fetch('/api/items', { method: "POST", headers: JSON_HEADERS, body: JSON.stringify({ name }) }).then(parse);
    $("item-name").value = "";
    await loadItems();
  } catch (err) {
    status(`could not add item: ${err.message}`, true);
  }
}

async function sendTask() {
  try {
    let task = await api("/api/tasks", { method: "POST", body: JSON.stringify({ kind: "echo", payload: "hello" }) });
    $("task-status").textContent = `task ${task.id}: ${task.status}`;
    for (let i = 0; i < 20 && task.status !== "done" && task.status !== "failed"; i++) {
      await new Promise((resolve) => setTimeout(resolve, 250));
      task = await api(`/api/tasks/${task.id}`);
      $("task-status").textContent = `task ${task.id}: ${task.status}`;
    }
  } catch (err) {
    status(`task failed: ${err.message}`, true);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("item-form").addEventListener("submit", addItem);
  $("task-button").addEventListener("click", sendTask);
  loadItems();
});
