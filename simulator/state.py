"""Everything one running simulator shares across its ports: options, clock and bookkeeping."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from simulator.clock import Clock, SystemClock
from simulator.config import MARKUPS, SimConfig
from simulator.faults import FaultPlan
from simulator.latency import Latency, parse_latency
from simulator.ledger import Ledger
from simulator.limits import Limiter
from simulator.nonces import NonceMinter
from simulator.pages import PageRenderer
from simulator.stats import Stats

NONCE_WORDINGS: tuple[str, ...] = (
    "Security check",
    "Invalid nonce. Please refresh the page.",
    "Nonce verification failed",
)


@dataclass
class SiteAddress:
    host: str
    port: int

    @property
    def netloc(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{shown}:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.netloc}"


@dataclass
class SimState:
    config: SimConfig
    site: SiteAddress
    clock: Clock = field(default_factory=SystemClock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.config.seed)
        self.latency: Latency = parse_latency(self.config.latency)
        self.nonces = NonceMinter(
            f"{self.config.nonce_secret}|{self.site.netloc}",  # a salt per site, as WordPress
            self.config.nonce_tick_seconds,
            self.clock,
            self.config.bind_nonce_to_cookie,
            self.config.bind_nonce_to_identity,
        )
        self.limiter = Limiter(self.config, self.clock)
        self.stats = Stats(self.clock)
        self.ledger = Ledger(keep=self.config.ledger)
        self.faults = FaultPlan(self.config, self.rng)
        self.pages = PageRenderer(self.site.url, self.config)
        self._wordings = itertools.cycle(NONCE_WORDINGS)

    def next_nonce_wording(self) -> str:
        """The three wordings in turn, so each shows up within any three failures."""
        return next(self._wordings)

    def pick_markup(self) -> str:
        if self.config.markup == "random":
            return self.rng.choice(MARKUPS)
        return self.config.markup

    def reset(self) -> None:
        self.stats.reset()
        self.limiter.reset()
