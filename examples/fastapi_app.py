"""FastAPI: one client for the app's lifetime, a JSON endpoint and an SSE streaming endpoint.

Run it:  uvicorn fastapi_app:app --app-dir examples   (ROUTMY_API_KEY/ROUTMY_BASE_URL from the
environment; with ROUTMY_BASE_URL unset the app starts its own MockRoutmy).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from routmy_async import AsyncRoutmy, RoutmyError
from routmy_async.testing import MockRoutmy

MODEL = os.environ.get("ROUTMY_MODEL", "mock/echo")


class Question(BaseModel):
    text: str


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


@app.get("/stream")
async def stream(q: str, request: Request) -> StreamingResponse:
    client: AsyncRoutmy = request.app.state.routmy

    async def events() -> AsyncIterator[str]:
        # When the browser disconnects, Starlette cancels this generator: `async with`
        # then closes the upstream stream and frees its connection at once.
        async with client.chat.completions.stream(
            model=MODEL, messages=[{"role": "user", "content": q}]
        ) as upstream:
            try:
                async for piece in upstream.text_deltas():
                    if await request.is_disconnected():
                        break
                    yield f"data: {json.dumps({'delta': piece})}\n\n"
            except RoutmyError as error:
                yield f"event: error\ndata: {json.dumps({'message': str(error)})}\n\n"
                return
        yield "data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
