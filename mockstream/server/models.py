"""`GET /v1/models`, `GET /v1/models/{model}` and `GET /healthz`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..errors import RequestError
from .state import State

BASE_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1", "gpt-4.1-mini", "o4-mini", "gpt-3.5-turbo")
MODEL_CREATED = 1_700_000_000


def add_routes(app: web.Application, state: State) -> None:
    def model_ids() -> list[str]:
        return list(dict.fromkeys([*BASE_MODELS, *state.scenarios.names()]))

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [_model_object(m) for m in model_ids()]})

    async def model(request: web.Request) -> web.Response:
        model_id = request.match_info["model"]
        if model_id not in model_ids():
            raise RequestError(
                404, f"The model `{model_id}` does not exist or you do not have access to it.", code="model_not_found"
            )
        return web.json_response(_model_object(model_id))

    app.router.add_get("/v1/models", models)
    app.router.add_get("/v1/models/{model}", model)
    app.router.add_get("/healthz", health)


def _model_object(model_id: str) -> dict[str, Any]:
    return {"id": model_id, "object": "model", "created": MODEL_CREATED, "owned_by": "mockstream"}


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})
