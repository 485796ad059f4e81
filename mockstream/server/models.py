"""`GET /v1/models`, `GET /v1/models/{model}` and `GET /healthz`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..dialects.gemini import GEMINI
from ..errors import RequestError
from .state import State

BASE_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-3.5-turbo")
MODEL_CREATED = 1_700_000_000
GEMINI_MODELS = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash", "gemini-embedding-001", "text-embedding-004")


def add_routes(app: web.Application, state: State) -> None:
    def model_ids() -> list[str]:
        return list(dict.fromkeys([*BASE_MODELS, *state.scenarios.names()]))

    async def models(request: web.Request) -> web.Response:
        if _from_google(request):
            return await gemini_models(request)
        return web.json_response({"object": "list", "data": [_model_object(m) for m in model_ids()]})

    async def model(request: web.Request) -> web.Response:
        model_id = request.match_info["model"]
        if _from_google(request):
            return await gemini_model(request)
        if model_id not in model_ids():
            raise RequestError(
                404, f"The model `{model_id}` does not exist or you do not have access to it.", code="model_not_found"
            )
        return web.json_response(_model_object(model_id))

    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model)
    app.router.add_get("/healthz", health)

    async def gemini_models(request: web.Request) -> web.Response:
        return web.json_response({"models": [_gemini_model(m) for m in gemini_ids()]})

    async def gemini_model(request: web.Request) -> web.Response:
        model_id = request.match_info["model"]
        if model_id not in gemini_ids():
            version = request.path.split("/")[1]
            error = RequestError(404, f"models/{model_id} is not found for API version {version}.", type="NOT_FOUND")
            return web.json_response(GEMINI.error_body(error), status=404)  # in Google's words on /v1 too
        return web.json_response(_gemini_model(model_id))

    def gemini_ids() -> list[str]:
        return list(dict.fromkeys([*GEMINI_MODELS, *state.scenarios.names()]))

    app.router.add_get("/v1beta/models", gemini_models)
    app.router.add_get("/v1beta/models/{model}", gemini_model)


def _from_google(request: web.Request) -> bool:
    """A Google client on `/v1/models` (google-genai's default API version is v1): it sends its key as
    `x-goog-api-key` (or `?key=`), so it gets Google's model list rather than OpenAI's."""
    return "x-goog-api-key" in request.headers or "key" in request.query


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "mockstream"}


def _gemini_model(model_id: str) -> dict[str, Any]:
    embeds = "embedding" in model_id
    return {
        "name": f"models/{model_id}",
        "version": "001",
        "displayName": model_id,
        "description": "A mockstream model.",
        "inputTokenLimit": 2048 if embeds else 1048576,
        "outputTokenLimit": 1 if embeds else 65536,
        "supportedGenerationMethods": (
            ["embedContent", "batchEmbedContents"] if embeds else ["generateContent", "countTokens"]
        ),
    }


async def health(request: web.Request) -> web.Response:
    """200 while the server answers; `degraded` while its shared state store is away (requests that need no
    shared state still stream, so a container should not be restarted for it)."""
    shared = State.of(request.app).shared
    if shared is not None and shared.error is not None:
        return web.json_response({"status": "degraded", "state": shared.error})
    return web.json_response({"status": "ok"})
