"""The fleet page: a verdict first, then the backlog, throughput, identities, workers and the
webhooks of the visitor's project; and its live part, swapped in every 2 s."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from producer.http.console.access import Visitor
from producer.http.console.charts import throughput_chart
from producer.http.console.fleet_reads import dead, read_fleet
from producer.http.console.rendering import render, signed_in
from producer.http.console.verdict import verdict
from producer.http.context import context_of


async def _fleet_context(request: web.Request, visitor: Visitor) -> dict[str, Any]:
    started = time.perf_counter()
    view = await read_fleet(context_of(request).queue, visitor.project)
    return {"view": view, "verdict": verdict(view), "chart": throughput_chart(view.throughput),
            "read_ms": (time.perf_counter() - started) * 1000,
            "zone": time.strftime("%Z"), "is_dead": dead}  # fmt: skip


@signed_in
async def fleet(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "fleet.html", visitor=visitor, title="Fleet", section="fleet",
                  **await _fleet_context(request, visitor))  # fmt: skip


@signed_in
async def fleet_live(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    return render(request, "fleet_live.html", visitor=visitor,
                  **await _fleet_context(request, visitor))  # fmt: skip
