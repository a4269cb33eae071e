// The console's own script: draws the identity grids, says when the live view is stale, and
// reads out (politely) what changed. Everything else is HTML from the server; htmx swaps the
// live parts every 2 s and gives focus back to the element with the same id.
"use strict";

const COLOURS = { r: "#2f9e44", f: "#e0a100", p: "#1c7ed6", c: "#d6336c" };

function drawGrid(canvas) {
  const states = canvas.dataset.states || "";
  const width = canvas.width;
  // The largest cell that keeps the grid under 320 px tall (10,000 identities: 4 px cells).
  let cell = 12;
  while (cell > 2 && Math.ceil(states.length / Math.floor(width / cell)) * cell > 320) cell -= 1;
  const columns = Math.max(1, Math.floor(width / cell));
  canvas.height = Math.max(cell, Math.ceil(states.length / columns) * cell);
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const gap = cell > 4 ? 1 : 0;
  for (let n = 0; n < states.length; n++) {
    context.fillStyle = COLOURS[states[n]] || "#adb5bd";
    context.fillRect((n % columns) * cell, Math.floor(n / columns) * cell, cell - gap, cell - gap);
  }
}

function drawGrids(root) {
  root.querySelectorAll("canvas.grid").forEach(drawGrid);
}

function setStale(stale) {
  const banner = document.getElementById("stale");
  if (banner) banner.hidden = !stale;
}

// The live parts carry what to announce (data-announce): the fleet's verdict, a batch's state.
// Only a change is read out, into a live region that stays in place (a swapped one would not be).
const announced = new Map();

function announce(root) {
  const region = document.getElementById("announcer");
  const parts = root.matches && root.matches("[data-announce]") ? [root] : [];
  root.querySelectorAll("[data-announce]").forEach((part) => parts.push(part));
  parts.forEach((part) => {
    const said = part.dataset.announce;
    if (announced.has(part.id) && announced.get(part.id) !== said && region) region.textContent = said;
    announced.set(part.id, said);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  drawGrids(document);
  announce(document);
  document.body.addEventListener("htmx:load", (event) => {
    drawGrids(event.target);
    announce(event.target);
  });
  document.body.addEventListener("htmx:afterRequest", (event) => setStale(!event.detail.successful));
  document.body.addEventListener("htmx:responseError", (event) => {
    // Signed out meanwhile (the session expired, or its key was removed): sign in again.
    if (event.detail.xhr.status === 401) window.location.assign("/sign-in");
  });
});
