"""FastAPI: one client for the app's lifetime, JSON endpoints, Pydantic structured output, an
SSE stream that a small page in this app shows as it arrives, and a form that fills itself as
the model's JSON answer streams.

Run it:  uvicorn fastapi_app:app --app-dir examples   and open http://127.0.0.1:8000/
(the self-filling form: http://127.0.0.1:8000/form)
(ROUTMY_API_KEY/ROUTMY_BASE_URL from the environment; with ROUTMY_BASE_URL unset the app
starts its own MockRoutmy).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from pydantic import BaseModel

from routmy_async import AsyncRoutmy, RoutmyError, http_reply_for
from routmy_async.testing import MockRoutmy

MODEL = os.environ.get("ROUTMY_MODEL", "mock/echo")


class Question(BaseModel):
    text: str


class Order(BaseModel):
    """An order mentioned in a message."""

    id: str
    status: str


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # One client (one connection pool) for every request the app serves, closed on shutdown.
    mock = None
    if not os.environ.get("ROUTMY_BASE_URL"):
        mock = await MockRoutmy().start()
        client = AsyncRoutmy(api_key=mock.api_key, base_url=mock.base_url)
    else:
        client = AsyncRoutmy()
    app.state.routmy = client
    try:
        yield
    finally:
        await client.close()
        if mock is not None:
            await mock.close()


app = FastAPI(lifespan=lifespan)


@app.exception_handler(RoutmyError)
async def upstream_failed(request: Request, error: RoutmyError) -> JSONResponse:
    # The router refused or failed before answering: tell the browser what happened. A rate
    # limit stays a 429 with its Retry-After, a refused request a 4xx with the router's reason,
    # a timeout a 504, a broken upstream a 502; the app's own key problems (401, 402) a 502.
    # Never the key: the SDK removed it from every message already.
    reply = http_reply_for(error)
    return JSONResponse(reply.content, status_code=reply.status_code, headers=reply.headers)


@app.post("/ask")
async def ask(question: Question, request: Request) -> dict[str, Any]:
    client: AsyncRoutmy = request.app.state.routmy
    completion = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question.text}]
    )
    return {
        "answer": completion.choices[0].message.content,
        "request_id": completion.request_id,
    }


@app.post("/completion")
async def completion(question: Question, request: Request) -> Response:
    # The whole ChatCompletion, encoded once by msgspec (completion.to_dict() works too).
    client: AsyncRoutmy = request.app.state.routmy
    result = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": question.text}]
    )
    return Response(result.to_json(), media_type="application/json")


@app.post("/extract")
async def extract(question: Question, request: Request) -> Order:
    # A Pydantic model as response_format: sent as a strict JSON schema, validated by Pydantic.
    client: AsyncRoutmy = request.app.state.routmy
    result = await client.chat.completions.parse(
        model=MODEL, messages=[{"role": "user", "content": question.text}], response_format=Order
    )
    order: Order = result.choices[0].message.parsed
    return order


@app.get("/stream")
async def stream(q: str, request: Request) -> StreamingResponse:
    client: AsyncRoutmy = request.app.state.routmy
    # Opened here, so an error before the first chunk (a 429, a 400) is raised here and
    # answered by upstream_failed with its own status.
    upstream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": q}], stream=True
    )
    # OpenAI-shaped chunk frames, a keep-alive comment every 10 s of silence, [DONE] at the
    # end, an upstream error as `event: error`; when the browser goes away the upstream
    # stream is closed at once, so no tokens are paid for after that.
    return upstream.to_streaming_response(keepalive=10)


@app.get("/extract/stream")
async def extract_stream(q: str, request: Request) -> StreamingResponse:
    client: AsyncRoutmy = request.app.state.routmy
    upstream = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": q}], stream=True, response_format=Order
    )
    # Only what changed, one frame each time the answer grows: [["set", [], {"id": "A-1"}]],
    # then [["append", ["id"], "23"], ["merge", [], {"status": "sh"}]], ... then [DONE]. The
    # page applies each to the answer it holds (applyPatch below) and fills its form from it;
    # the bytes sent grow with the answer, not its square (format="partial" sends the whole
    # answer each time, simpler for small answers).
    return upstream.to_streaming_response(format="patch", keepalive=10)


FORM = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Order from a message</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  label { display: block; margin: .5rem 0; }
  input { width: 24rem; font: inherit; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>Order from a message</h1>
<form id="ask">
  <input id="q" placeholder="Order A-123 has shipped" autofocus>
  <button>Extract</button>
</form>
<label>Order id <input id="id" readonly></label>
<label>Status <input id="status-field" readonly></label>
<p id="status">idle</p>
<script>
const fields = {id: document.getElementById("id"), status: document.getElementById("status-field")};
const status = document.getElementById("status");
let source = null;

// Own properties, as JSON.parse makes them: `=` and Object.assign would set the prototype
// for a key named "__proto__" and lose it.
const put = (target, key, value) => Object.defineProperty(target, key,
  {value, writable: true, enumerable: true, configurable: true});

// A patch frame is a list of [operation, path, data]: the value at `path` (keys and indices
// from the root) is set, its string appended to, its array extended, or its object merged.
function applyPatch(value, ops) {
  const box = {value};
  for (const [op, path, data] of ops) {
    let parent = box, key = "value";
    for (const step of path) [parent, key] = [parent[key], step];
    if (op === "set") put(parent, key, data);
    else if (op === "append") put(parent, key, parent[key] + data);
    else if (op === "extend") for (const item of data) parent[key].push(item);
    else if (op === "merge") for (const name in data) put(parent[key], name, data[name]);
  }
  return box.value;
}

function extract(message) {
  if (source) source.close();
  for (const input of Object.values(fields)) input.value = "";
  status.textContent = "streaming";
  source = new EventSource("/extract/stream?q=" + encodeURIComponent(message));
  let order = null;
  source.onmessage = (event) => {
    if (event.data === "[DONE]") {
      source.close();
      status.textContent = "done";
      return;
    }
    // Each frame says what changed: a field appears once its value begins, and a text
    // grows as it arrives.
    order = applyPatch(order, JSON.parse(event.data));
    for (const [name, input] of Object.entries(fields)) {
      if (typeof order[name] === "string") input.value = order[name];
    }
  };
  source.addEventListener("error", (event) => {
    status.textContent = event.data
      ? "error: " + JSON.parse(event.data).error.message
      : "connection lost";
    source.close();
  });
}

document.getElementById("ask").addEventListener("submit", (event) => {
  event.preventDefault();
  extract(document.getElementById("q").value);
});
const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  document.getElementById("q").value = initial;
  extract(initial);
}
</script>
</body>
</html>
"""


@app.get("/form", response_class=HTMLResponse)
async def form() -> str:
    return FORM


PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Ask rout.my</title>
<style>
  body { font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; }
  input { width: 30rem; font: inherit; }
  #answer { white-space: pre-wrap; border-left: 3px solid #4a7; padding-left: 1rem; }
  #status { color: #666; }
</style>
</head>
<body>
<h1>Ask rout.my</h1>
<form id="ask">
  <input id="q" name="q" placeholder="Your question" autofocus>
  <button>Ask</button>
</form>
<p id="status">idle</p>
<div id="answer"></div>
<script>
const form = document.getElementById("ask");
const answer = document.getElementById("answer");
const status = document.getElementById("status");
let source = null;

function ask(question) {
  if (source) source.close();
  answer.textContent = "";
  status.textContent = "streaming";
  source = new EventSource("/stream?q=" + encodeURIComponent(question));
  source.onmessage = (event) => {
    if (event.data === "[DONE]") {
      source.close();
      status.textContent = "done";
      return;
    }
    for (const choice of JSON.parse(event.data).choices || []) {
      if ((choice.index || 0) === 0 && choice.delta && choice.delta.content) {
        answer.textContent += choice.delta.content;
      }
    }
  };
  // Both an `event: error` frame (with data) and a lost connection arrive here. Close
  // either way: EventSource would otherwise reconnect and ask the model again.
  source.addEventListener("error", (event) => {
    status.textContent = event.data
      ? "error: " + JSON.parse(event.data).error.message
      : "connection lost";
    source.close();
  });
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  ask(document.getElementById("q").value);
});
const initial = new URLSearchParams(location.search).get("q");
if (initial) {
  document.getElementById("q").value = initial;
  ask(initial);
}
</script>
</body>
</html>
"""


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return PAGE
