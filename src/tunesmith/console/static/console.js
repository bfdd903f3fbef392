// tunesmith console: the loss chart, the advisor's "use these values" button, the playground.
// Plain browser JavaScript, no build step; htmx and uPlot are loaded before this file.
"use strict";

// --- Loss chart (job page) -------------------------------------------------------------------
// Steps are whole numbers: the x axis ticks only on integers, and a run of one step gets an axis
// around its step (uPlot would otherwise pad a single value with fractional ticks).
const STEP_INCREMENTS = [1, 2, 5];

function stepRange(plot, min, max) {
  const steps = plot.data[0];
  if (steps.length === 1) return [steps[0] - 0.5, steps[0] + 0.5];  // uPlot hands a lone value over padded by 1
  if (min === null || max === null) return [0, 1];
  return [min, max];
}

function stepTicks(min, max, room) {
  if (!Number.isFinite(min) || !Number.isFinite(max)) return [];
  let increment = 1;
  for (let scale = 1; scale < 1e12; scale *= 10) {
    const fits = STEP_INCREMENTS.map((n) => n * scale).find((n) => (max - min) / n <= room);
    if (fits) { increment = fits; break; }
  }
  const ticks = [];
  for (let tick = Math.ceil(min / increment) * increment; tick <= max; tick += increment) ticks.push(tick);
  return ticks;
}

function lossChart(element) {
  let plot = null;
  const options = () => ({
    width: Math.max(320, element.clientWidth - 16), height: 300,
    scales: { x: { time: false, range: stepRange } },
    axes: [
      { label: "step", values: (u, ticks) => ticks.map(String),
        splits: (u, axis, min, max) => {
          const ticks = stepTicks(min, max, Math.max(1, Math.floor(u.width / 70)));
          element.dataset.ticks = ticks.join(",");  // what the axis shows, for tests
          return ticks;
        } },
      { label: "loss" },
    ],
    series: [
      { label: "step" },
      { label: "training loss", stroke: "#2f5fd0", width: 2, spanGaps: true },
      { label: "validation loss", stroke: "#f79009", width: 2, spanGaps: true, points: { show: true, size: 7 } },
    ],
  });
  async function refresh() {
    let body;
    try {
      const answer = await fetch(element.dataset.source, { headers: { Accept: "application/json" } });
      if (!answer.ok) return true;
      body = await answer.json();
    } catch (error) { return true; }
    const data = [body.steps, body.training, body.validation];
    if (plot === null) { plot = new uPlot(options(), data, element); } else { plot.setData(data); }
    const points = body.training.filter((v) => v !== null).length + body.validation.filter((v) => v !== null).length;
    element.dataset.points = String(points);
    element.dataset.status = body.status;
    return body.active;
  }
  async function loop() {
    const active = await refresh();
    if (active) setTimeout(loop, Number(element.dataset.poll || 2) * 1000);
    else element.dataset.done = "true";
  }
  loop();
  window.addEventListener("resize", () => { if (plot) plot.setSize({ width: Math.max(320, element.clientWidth - 16), height: 300 }); });
}

// --- Create-job form: fill the advisor's values in -----------------------------------------------
document.addEventListener("click", (event) => {
  const button = event.target.closest("#use-advice");
  if (!button) return;
  const values = JSON.parse(button.dataset.fill);
  for (const [key, value] of Object.entries(values)) {
    const input = document.getElementById("hp-" + key);
    if (input) input.value = value;
  }
  const duplication = document.getElementById("duplication-factor");
  duplication.value = button.dataset.duplication;
  duplication.dispatchEvent(new Event("change", { bubbles: true }));  // its fieldset's change asks for the advice again
});

// --- Playground ------------------------------------------------------------------------------
// Each answer is labelled with the model that gave it; choosing another model starts a new
// conversation (the history so far was another model's).
function playground(form) {
  const transcript = document.getElementById("transcript");
  const status = document.getElementById("chat-status");
  const chooser = document.getElementById("chat-model");
  let history = [];

  function turn(role, text, who) {
    const div = document.createElement("div");
    div.className = "turn " + role;
    const label = document.createElement("span");
    label.className = "who";
    label.textContent = who;
    const body = document.createElement("span");
    body.className = "text";
    body.textContent = text;
    div.append(label, body);
    transcript.append(div);
    return div;
  }

  function reset(message) { history = []; transcript.textContent = ""; status.textContent = message; }

  document.getElementById("chat-clear").addEventListener("click", () => reset(""));
  chooser.addEventListener("change", () => reset(`New conversation with ${chooser.value}.`));

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const message = document.getElementById("chat-message");
    const text = message.value.trim();
    if (!text) return;
    const send = document.getElementById("chat-send");
    send.disabled = true;
    const model = chooser.value;
    turn("user", text, "You");
    history.push({ role: "user", content: [{ text }] });
    message.value = "";
    const answer = turn("assistant", "", model);
    answer.dataset.model = model;
    const body = answer.querySelector(".text");
    answer.dataset.state = "streaming";
    status.textContent = "Generating…";
    const request = {
      modelId: model, messages: history,
      inferenceConfig: { maxTokens: Number(document.getElementById("chat-max-tokens").value),
                         temperature: Number(document.getElementById("chat-temperature").value) },
    };
    const system = document.getElementById("chat-system").value.trim();
    if (system) request.system = [{ text: system }];
    try {
      const response = await fetch(form.dataset.stream, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request) });
      if (!response.ok) throw new Error(await response.text());
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const kind = (frame.match(/^event: (.*)$/m) || [])[1];
          const data = JSON.parse((frame.match(/^data: (.*)$/m) || [null, "{}"])[1]);
          if (kind === "delta") body.textContent += data.text;
          else if (kind === "done") status.textContent = `${data.outputTokens} tokens, stopped: ${data.stopReason}`;
          else if (kind === "error") throw new Error(data.message);
        }
      }
      history.push({ role: "assistant", content: [{ text: body.textContent || " " }] });
      answer.dataset.state = "done";
    } catch (error) {
      answer.classList.add("failed");
      answer.dataset.state = "failed";
      body.textContent = error.message;
      history.pop();
      status.textContent = "";
    } finally {
      send.disabled = false;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const chart = document.getElementById("loss-chart");
  if (chart) lossChart(chart);
  const chat = document.getElementById("chat-form");
  if (chat) playground(chat);
});
