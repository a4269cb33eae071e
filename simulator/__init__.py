"""An offline stand-in for chatgpt.es (WordPress + the wpaicg chat plugin) and proxies before it.

``run_simulator`` and ``SimConfig`` are exported lazily, so importing
``simulator.cli`` does not pull in aiohttp.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simulator.clock import ManualClock
    from simulator.config import SimConfig
    from simulator.server import Simulator, run_simulator

__all__ = ["ManualClock", "SimConfig", "Simulator", "run_simulator"]

_HOMES = {
    "ManualClock": "simulator.clock",
    "SimConfig": "simulator.config",
    "Simulator": "simulator.server",
    "run_simulator": "simulator.server",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'simulator' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_HOMES[name]), name)
