// The fastsam web page: upload once, then every click is a cheap prompt on the cached result.
"use strict";

const API = "/v1";
const $ = (id) => document.getElementById(id);
const imageCanvas = $("image"), overlay = $("overlay"), marks = $("marks");
const DRAG_PIXELS = 5;  // a press that moves further than this (screen pixels) draws a box instead of a point
const PROMPT_COLOR = [30, 144, 255, 150];
const MARK_COLORS = { 1: "#39ff14", 0: "#ff3b30" };

// Read by the browser test: what is shown, and how long the last prompt took from click to drawn mask.
const state = window.fastsamState = {
  imageId: null, fileName: null, width: 0, height: 0, prompts: [], textPrompts: false,
  shown: "none", maskCount: 0, lastLatencyMs: null, requests: 0,
};
let sequence = 0;  // answers to superseded requests are dropped

function setStatus(text, kind) {
  $("status").textContent = text;
  document.body.dataset.state = kind;
}

function updateButtons() {
  const ready = state.imageId !== null;
  $("undo").disabled = !ready || state.prompts.length === 0;
  $("clear").disabled = !ready || state.prompts.length === 0;
  $("download-mask").disabled = !ready || state.prompts.length === 0;
  $("download-coco").disabled = !ready;
}

async function errorMessage(response) {
  try {
    const body = await response.json();
    return body.error ? body.error.message : response.statusText;
  } catch (_) {
    return `${response.status} ${response.statusText}`;
  }
}

// A server started with --token needs it on every API request: open the page as /#token=TOKEN once; the token is
// kept for this tab only and taken out of the address bar (a fragment never reaches the server or its logs).
const TOKEN_KEY = "fastsam-token";
{
  const match = /(?:^#|&)token=([^&]+)/.exec(window.location.hash);
  if (match) {
    sessionStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
}

async function api(path, options) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const request = { ...(options || {}) };
  if (token) request.headers = { ...(request.headers || {}), Authorization: `Bearer ${token}` };
  const response = await fetch(API + path, request);
  if (response.status === 401) {
    throw new Error("This server needs its API token: open the page as /#token=YOUR_TOKEN.");
  }
  if (!response.ok) throw new Error(await errorMessage(response));
  return response;
}

// ------------------------------------------------------------------------------------------ drawing
function colorFor(k) {
  // Golden-angle hues: neighbouring instances get distinct colours.
  const hue = (k * 137.508) % 360, s = 0.75, l = 0.55;
  const f = (n) => {
    const a = s * Math.min(l, 1 - l), t = (n + hue / 30) % 12;
    return Math.round(255 * (l - a * Math.max(-1, Math.min(t - 3, 9 - t, 1))));
  };
  return [f(0), f(8), f(4), 140];
}

function drawMasks(masks, colorOf) {
  const context = overlay.getContext("2d");
  const pixels = context.createImageData(state.width, state.height);
  // Largest first, so that small masks stay visible on top.
  const order = masks.map((m, k) => k).sort((a, b) => masks[b].area - masks[a].area);
  for (const k of order) paintRle(pixels.data, masks[k].rle, colorOf(k));
  context.putImageData(pixels, 0, 0);
  state.maskCount = masks.length;
}

function clearOverlay() {
  overlay.getContext("2d").clearRect(0, 0, overlay.width, overlay.height);
  state.maskCount = 0;
}

function drawMarks(dragBox) {
  const context = marks.getContext("2d");
  context.clearRect(0, 0, marks.width, marks.height);
  const scale = Math.max(state.width, state.height) / 600;
  context.lineWidth = Math.max(2, 2 * scale);
  const boxes = state.prompts.filter((p) => p.kind === "box").map((p) => p.box);
  if (dragBox) boxes.push(dragBox);
  context.strokeStyle = "#ffd60a";
  for (const [x1, y1, x2, y2] of boxes) context.strokeRect(x1, y1, x2 - x1, y2 - y1);
  for (const p of state.prompts.filter((p) => p.kind === "point")) {
    context.beginPath();
    context.arc(p.x + 0.5, p.y + 0.5, Math.max(4, 5 * scale), 0, 2 * Math.PI);
    context.fillStyle = MARK_COLORS[p.label];
    context.fill();
    context.strokeStyle = "#000";
    context.stroke();
  }
}

// ------------------------------------------------------------------------------------------ prompts
function promptBody(format) {
  const body = { format };
  const points = state.prompts.filter((p) => p.kind === "point");
  const boxes = state.prompts.filter((p) => p.kind === "box");
  const texts = state.prompts.filter((p) => p.kind === "text");
  if (points.length) { body.points = points.map((p) => [p.x, p.y]); body.labels = points.map((p) => p.label); }
  if (boxes.length) body.boxes = boxes.map((p) => p.box);
  if (texts.length) body.texts = texts.map((p) => p.text);
  return body;
}

async function refresh(startedAt) {
  drawMarks();
  updateButtons();
  const mine = ++sequence;
  const start = startedAt === undefined ? performance.now() : startedAt;
  try {
    if (state.prompts.length === 0) {
      if (!$("everything").checked) { clearOverlay(); state.shown = "none"; setStatus("Ready.", "ready"); return; }
      setStatus("Loading every instance…", "busy");
      const answer = await (await api(`/images/${state.imageId}/everything`)).json();
      if (mine !== sequence) return;
      drawMasks(answer.masks, colorFor);
      state.shown = "everything";
      setStatus(`${answer.count} instances (everything mode). Click to prompt.`, "ready");
      return;
    }
    setStatus("Prompting…", "busy");
    state.requests += 1;
    const answer = await (await api(`/images/${state.imageId}/prompt`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(promptBody("rle")),
    })).json();
    if (mine !== sequence) return;
    drawMasks(answer.masks, () => PROMPT_COLOR);
    state.shown = "prompt";
    state.lastLatencyMs = performance.now() - start;
    const best = answer.masks.length ? Math.max(...answer.masks.map((m) => m.score)).toFixed(2) : "–";
    setStatus(`${answer.count} mask(s), score ${best}, in ${state.lastLatencyMs.toFixed(0)} ms`, "ready");
  } catch (error) {
    if (mine === sequence) setStatus(error.message, "error");
  }
}

function addPrompt(prompt, startedAt) {
  if (state.imageId === null) return;
  state.prompts.push(prompt);
  refresh(startedAt);
}

// --------------------------------------------------------------------------------------- pointer input
function toImage(event) {
  const rect = marks.getBoundingClientRect();
  const x = (event.clientX - rect.left) * (state.width / rect.width);
  const y = (event.clientY - rect.top) * (state.height / rect.height);
  return [Math.min(state.width - 1, Math.max(0, Math.floor(x))), Math.min(state.height - 1, Math.max(0, Math.floor(y)))];
}

let press = null;
marks.addEventListener("pointerdown", (event) => {
  if (event.button !== 0 || state.imageId === null) return;
  press = { screen: [event.clientX, event.clientY], image: toImage(event), dragging: false };
  marks.setPointerCapture(event.pointerId);
});
marks.addEventListener("pointermove", (event) => {
  if (!press) return;
  const moved = Math.hypot(event.clientX - press.screen[0], event.clientY - press.screen[1]);
  press.dragging = press.dragging || moved > DRAG_PIXELS;
  if (press.dragging) drawMarks(boxFrom(press.image, toImage(event)));
});
marks.addEventListener("pointerup", (event) => {
  if (!press) return;
  const started = performance.now();
  const done = press;
  press = null;
  if (done.dragging) {
    const box = boxFrom(done.image, toImage(event));
    if (box[2] > box[0] && box[3] > box[1]) addPrompt({ kind: "box", box }, started);
    else drawMarks();
  } else {
    const background = event.shiftKey || event.altKey || event.ctrlKey || event.metaKey;
    addPrompt({ kind: "point", x: done.image[0], y: done.image[1], label: background ? 0 : 1 }, started);
  }
});
marks.addEventListener("contextmenu", (event) => {
  event.preventDefault();
  const [x, y] = toImage(event);
  addPrompt({ kind: "point", x, y, label: 0 }, performance.now());
});

function boxFrom(a, b) {
  return [Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]) + 1, Math.max(a[1], b[1]) + 1];
}

// ----------------------------------------------------------------------------------------- opening
async function drawImage(file, answer) {
  // The browser draws the local file when it can and agrees on the size (EXIF orientation included);
  // otherwise (TIFF, PPM...) the server's decoded copy is shown.
  let bitmap = null;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  } catch (_) { bitmap = null; }
  if (!bitmap || bitmap.width !== answer.width || bitmap.height !== answer.height) {
    const blob = await (await api(`/images/${answer.image_id}/image`)).blob();
    bitmap = await createImageBitmap(blob);
  }
  for (const canvas of [imageCanvas, overlay, marks]) { canvas.width = answer.width; canvas.height = answer.height; }
  imageCanvas.getContext("2d").drawImage(bitmap, 0, 0);
}

async function openFile(file) {
  if (!file) return;
  state.imageId = null;
  state.prompts = [];
  updateButtons();
  setStatus(`Segmenting ${file.name}…`, "busy");
  try {
    const started = performance.now();
    const answer = await (await api("/images", {
      method: "POST", headers: { "Content-Type": file.type || "application/octet-stream" }, body: file,
    })).json();
    await drawImage(file, answer);
    Object.assign(state, { imageId: answer.image_id, fileName: file.name, width: answer.width, height: answer.height });
    $("hint").hidden = true;
    $("stage").hidden = false;
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    await refresh();
    if (document.body.dataset.state !== "error") {
      setStatus(`${answer.instances} instances in ${seconds} s${answer.reused ? " (cached)" : ""}. ` +
                "Click: foreground, right-click: background, drag: box.", "ready");
    }
  } catch (error) {
    setStatus(error.message, "error");
  }
}

$("file").addEventListener("change", (event) => openFile(event.target.files[0]));
const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  openFile(event.dataTransfer.files[0]);
});

// ----------------------------------------------------------------------------------------- toolbar
function undo() { if (state.prompts.length) { state.prompts.pop(); refresh(); } }
function clearPrompts() { if (state.prompts.length) { state.prompts = []; refresh(); } }
$("undo").addEventListener("click", undo);
$("clear").addEventListener("click", clearPrompts);
$("everything").addEventListener("change", () => { if (state.imageId && !state.prompts.length) refresh(); });
document.addEventListener("keydown", (event) => {
  if (event.target === $("text")) return;
  if ((event.ctrlKey || event.metaKey) && event.key === "z") { event.preventDefault(); undo(); }
  if (event.key === "Escape") clearPrompts();
});

function findText() {
  const text = $("text").value.trim();
  if (text) addPrompt({ kind: "text", text }, performance.now());
}
$("text-go").addEventListener("click", findText);
$("text").addEventListener("keydown", (event) => { if (event.key === "Enter") findText(); });

function save(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  document.body.appendChild(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10000);
}

function stem() { return (state.fileName || "image").replace(/\.[^.]*$/, ""); }

$("download-mask").addEventListener("click", async () => {
  try {
    const response = await api(`/images/${state.imageId}/prompt`, {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(promptBody("png")),
    });
    save(await response.blob(), `${stem()}_mask.png`);
  } catch (error) { setStatus(error.message, "error"); }
});
$("download-coco").addEventListener("click", async () => {
  try {
    const name = encodeURIComponent(state.fileName || "image.png");
    const response = await api(`/images/${state.imageId}/everything?format=coco&file_name=${name}`);
    save(await response.blob(), `${stem()}_coco.json`);
  } catch (error) { setStatus(error.message, "error"); }
});

// The text box appears only when the server has a text model.
api("/model").then((r) => r.json()).then((info) => {
  state.textPrompts = info.text_prompts;
  $("text-tools").hidden = !info.text_prompts;
}).catch((error) => setStatus(error.message, "error"));
