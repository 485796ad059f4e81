// How chat front-ends read a streamed Chat Completions answer in the browser, the right way and a
// common wrong way. tests/test_browser.py runs both against mockstream in headless Chromium.
"use strict";

// The right way: one TextDecoder in streaming mode (a UTF-8 character may be split across reads), and
// a buffer that keeps the unfinished last line until the next read completes it (WHATWG SSE rules).
// `decodeEachRead: true` keeps the line buffer but decodes every read on its own: the UTF-8 bug alone.
async function readStream(response, onDelta, seen, { decodeEachRead = false } = {}) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "", data = [];
  const dispatch = () => {
    const payload = data.join("\n");
    data = [];
    if (payload === "" || payload === "[DONE]") return;
    for (const choice of JSON.parse(payload).choices) {
      if (choice.delta.content) onDelta(choice.delta.content);
      if (choice.finish_reason) seen.finish = choice.finish_reason;
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (decodeEachRead) buffer += done ? "" : new TextDecoder().decode(value);
    else buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    if (!done) seen.reads += 1;
    const lines = buffer.split("\n");
    buffer = done ? "" : lines.pop();
    for (const raw of lines) {
      const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
      if (line === "") dispatch();
      else if (line.startsWith("data:")) data.push(line.slice(line.startsWith("data: ") ? 6 : 5));
    }
    if (done) return;
  }
}

// The common wrong way: decode each read on its own (no {stream: true}) and split each read on "\n",
// as if every read held whole lines. It works while the server writes whole events.
async function readStreamNaively(response, onDelta, seen) {
  const reader = response.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    seen.reads += 1;
    for (const line of new TextDecoder().decode(value).split("\n")) {
      if (!line.startsWith("data: ") || line === "data: [DONE]") continue;
      const chunk = JSON.parse(line.slice(6));
      if (chunk.choices[0].delta.content) onDelta(chunk.choices[0].delta.content);
      if (chunk.choices[0].finish_reason) seen.finish = chunk.choices[0].finish_reason;
    }
  }
}

// POST a streaming chat request and write the answer into #answer (or #<into>), the outcome into #status
// (or #<into>-status). Resolves to what a test wants to check; never rejects (errors are in the result).
// `parser`: "correct", "naive" or "decodeEachRead".
async function chat(url, { knobs = {}, headers = {}, parser = "correct", into = "answer" } = {}) {
  const answer = element(into), status = element(into === "answer" ? "status" : `${into}-status`);
  answer.textContent = "";
  status.textContent = "streaming";
  const result = { text: "", error: null, finish: null, reads: 0, requestId: null, hidden: null };
  try {
    const response = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: JSON.stringify({
        model: "gpt-4o-mini", stream: true, mockstream: knobs,
        messages: [{ role: "user", content: "Say hello." }],
      }),
    });
    result.status = response.status;
    result.requestId = response.headers.get("x-request-id");
    result.hidden = response.headers.get("x-accel-buffering");  // sent, but not exposed to scripts
    if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
    const onDelta = (delta) => { answer.textContent += delta; };
    if (parser === "naive") await readStreamNaively(response, onDelta, result);
    else await readStream(response, onDelta, result, { decodeEachRead: parser === "decodeEachRead" });
    status.textContent = result.finish || "cut short";
  } catch (error) {
    result.error = `${error.name}: ${error.message}`;
    status.textContent = "error";
  }
  result.text = answer.textContent;
  return result;
}

function element(id) {
  let found = document.getElementById(id);
  if (!found) {
    found = document.body.appendChild(document.createElement("p"));
    found.id = id;
  }
  return found;
}

// new EventSource(url), three ways a page may listen. Resolves when the page stops listening.
// "stop": build the text, close on finish_reason "stop" (the right way).
// "naive": JSON.parse every message, stop at the first error event (the stream's end or a failure).
// "reconnect": never close on its own; stop once the browser has reconnected after the stream ended.
function listen(url, how) {
  const answer = document.getElementById("answer");
  answer.textContent = "";
  return new Promise((resolve) => {
    const source = new EventSource(url);
    const seen = { text: "", finish: null, messages: 0, opens: 0, errors: [], lastEventId: null, reconnectMs: null };
    let endedAt = null;
    const end = () => {
      source.close();
      seen.text = answer.textContent;
      seen.readyState = source.readyState;
      resolve(seen);
    };
    source.onopen = () => {
      seen.opens += 1;
      if (how === "reconnect" && seen.opens === 2) {
        seen.reconnectMs = performance.now() - endedAt;
        end();
      }
    };
    source.onmessage = (event) => {
      seen.messages += 1;
      seen.lastEventId = event.lastEventId;
      const chunk = JSON.parse(event.data);  // throws on "[DONE]": the naive page's bug
      const choice = chunk.choices[0];
      if (choice.delta.content) answer.textContent += choice.delta.content;
      if (choice.finish_reason) seen.finish = choice.finish_reason;
      if (how === "stop" && choice.finish_reason === "stop") end();
    };
    source.onerror = () => {
      seen.errors.push(source.readyState);
      if (how === "reconnect" && endedAt === null) endedAt = performance.now();
      else end();
    };
  });
}
