"""``/v1/models``: the models chatgpt.es answers for, as OpenAI lists models.

Clients often list models to check a connection and a key before anything else.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contract.config import KNOWN_MODELS
from producer.http.errors import not_found


def model_object(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "chatgpt.es"}


async def list_models(request: web.Request) -> web.Response:
    return web.json_response({"object": "list", "data": [model_object(m) for m in KNOWN_MODELS]})


async def retrieve_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in KNOWN_MODELS:
        raise not_found(f"The model '{name}' does not exist; known: {', '.join(KNOWN_MODELS)}.",
                        param="model")  # fmt: skip
    return web.json_response(model_object(name))
