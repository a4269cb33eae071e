"""Per-request delays drawn from a distribution named by a short spec string.

Specs (all in milliseconds):

- ``fixed:MS`` — always MS (``fixed:0`` = no delay)
- ``uniform:LO,HI`` — uniform between LO and HI
- ``lognormal:MEDIAN,SIGMA`` — log-normal with the given median and shape
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Latency:
    kind: str
    a: float
    b: float = 0.0

    def sample_seconds(self, rng: random.Random) -> float:
        if self.kind == "fixed":
            ms = self.a
        elif self.kind == "uniform":
            ms = rng.uniform(self.a, self.b)
        else:
            ms = rng.lognormvariate(math.log(self.a), self.b)
        return max(0.0, ms) / 1000.0

    @property
    def is_zero(self) -> bool:
        return self.kind == "fixed" and self.a == 0


def parse_latency(spec: str) -> Latency:
    """Parse a latency spec; raise ValueError with the accepted forms on a bad one."""
    kind, _, args = spec.partition(":")
    try:
        values = [float(part) for part in args.split(",")] if args else []
    except ValueError:
        values = []
    if kind == "fixed" and len(values) == 1 and values[0] >= 0:
        return Latency("fixed", values[0])
    if kind == "uniform" and len(values) == 2 and 0 <= values[0] <= values[1]:
        return Latency("uniform", values[0], values[1])
    if kind == "lognormal" and len(values) == 2 and values[0] > 0 and values[1] >= 0:
        return Latency("lognormal", values[0], values[1])
    raise ValueError(f"bad latency {spec!r}: use fixed:MS, uniform:LO,HI or lognormal:MEDIAN,SIGMA")
