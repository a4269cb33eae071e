"""WordPress-style nonces: an HMAC over (tick, action, session), cut to 10 hex chars.

As in ``wp_create_nonce``: ``tick = ceil(now / tick_seconds)``, and a nonce
verifies during the tick it was made in and the one after (so it lives
between one and two ticks). With cookie binding off the session part is empty,
like a logged-out WordPress visitor, so every client gets the same nonce.
"""

from __future__ import annotations

import hashlib
import hmac
import math

from simulator.clock import Clock

CHAT_ACTION = "wpaicg-chat-nonce"
REST_ACTION = "wp_rest"


class NonceMinter:
    def __init__(self, secret: str, tick_seconds: float, clock: Clock, bind_to_session: bool):
        self._secret = secret.encode()
        self._tick_seconds = tick_seconds
        self._clock = clock
        self._bind = bind_to_session

    def tick(self) -> int:
        return math.ceil(self._clock.now() / self._tick_seconds)

    def _digest(self, tick: int, action: str, session: str) -> str:
        bound = session if self._bind else ""
        message = f"{tick}|{action}|{bound}".encode()
        return hmac.new(self._secret, message, hashlib.md5).hexdigest()[-12:-2]

    def create(self, action: str = CHAT_ACTION, session: str = "") -> str:
        return self._digest(self.tick(), action, session)

    def verify(self, nonce: str, action: str = CHAT_ACTION, session: str = "") -> bool:
        """True if the nonce was made for this action (and session) this tick or the last."""
        if not nonce:
            return False
        tick = self.tick()
        return any(
            hmac.compare_digest(nonce, self._digest(t, action, session)) for t in (tick, tick - 1)
        )
