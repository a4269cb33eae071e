"""``/v1/models``: the model names this service answers for, as OpenAI lists models.

Clients often list models to check a connection and a key before anything else. The
names are the settings' model map (``contract.model_map``: OpenAI's chat model names
and ``CHATGPTES_MODELS``); each names the model chatgpt.es serves for it as its
``root``, as other OpenAI-compatible servers do. A dated snapshot of a listed name is
answered too.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from contract.model_map import SETTING
from producer.http.context import context_of
from producer.http.errors import ApiError


def model_object(name: str, served: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": "chatgpt.es", "root": served}


async def list_models(request: web.Request) -> web.Response:
    models = context_of(request).settings.model_map()
    data = [model_object(name, models.served(name) or name) for name in models]
    return web.json_response({"object": "list", "data": data})


async def retrieve_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    served = context_of(request).settings.model_map().served(name)
    if served is None:
        raise ApiError(404, f"The model '{name[:100]}' does not exist here; {SETTING} adds model "
                       "names (GET /v1/models lists them).", param="model",
                       code="model_not_found")  # fmt: skip
    return web.json_response(model_object(name, served))
