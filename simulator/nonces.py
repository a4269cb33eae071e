"""WordPress-style nonces: an HMAC over (tick, action, session[, identity]), cut to 10 hex chars.

As in ``wp_create_nonce``: ``tick = ceil(now / tick_seconds)``, and a nonce
verifies during the tick it was made in and the one after (so it lives
between one and two ticks). With cookie binding off the session part is empty,
like a logged-out WordPress visitor, so every client gets the same nonce.
With identity binding on, the exit identity (``direct``, ``proxy1``,
``gw:USER``…) is part of the HMAC too, so a nonce fetched through one exit is
refused through another; with it off the HMAC input is exactly as before.
"""

from __future__ import annotations

import hashlib
import hmac
import math

from simulator.clock import Clock

CHAT_ACTION = "wpaicg-chat-nonce"
REST_ACTION = "wp_rest"


class NonceMinter:
    def __init__(
        self,
        secret: str,
        tick_seconds: float,
        clock: Clock,
        bind_to_session: bool,
        bind_to_identity: bool = False,
    ):
        self._secret = secret.encode()
        self._tick_seconds = tick_seconds
        self._clock = clock
        self._bind = bind_to_session
        self._bind_identity = bind_to_identity

    def tick(self) -> int:
        return math.ceil(self._clock.now() / self._tick_seconds)

    def _digest(self, tick: int, action: str, session: str, identity: str) -> str:
        bound = session if self._bind else ""
        message = f"{tick}|{action}|{bound}"
        if self._bind_identity:
            message += f"|{identity}"
        return hmac.new(self._secret, message.encode(), hashlib.md5).hexdigest()[-12:-2]

    def create(self, action: str = CHAT_ACTION, session: str = "", identity: str = "") -> str:
        return self._digest(self.tick(), action, session, identity)

    def verify(
        self, nonce: str, action: str = CHAT_ACTION, session: str = "", identity: str = ""
    ) -> bool:
        """True if the nonce was made for this action (session, identity) this tick or the last."""
        if not nonce:
            return False
        tick = self.tick()
        return any(
            hmac.compare_digest(nonce, self._digest(t, action, session, identity))
            for t in (tick, tick - 1)
        )
