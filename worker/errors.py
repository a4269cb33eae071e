"""Everything that can go wrong in one chatgpt.es exchange, as one tree.

The retry policy reads the class, never the message text::

    UpstreamError                 base of every exchange failure
    ├── RetryableError            worth another attempt
    │   ├── SessionStale          nonce rejected: drop the session, handshake again, retry at once
    │   ├── RateLimited           HTTP 429: cool this identity for Retry-After, retry elsewhere
    │   ├── QuotaExceeded         tokenLimitReached: this exit used its quota, rest it long
    │   ├── Blocked               403 challenge / "not allowed": quarantine the identity
    │   ├── ProxyFault            proxy refused, 407, 502 from the proxy: mark it down
    │   ├── HandshakeFailed       the page had no nonce or post id: suspect the exit, retry
    │   └── UpstreamHiccup        5xx, reset, non-JSON body, empty answer: suspect the exit,
    │                             back off and retry (elsewhere if the exit keeps failing)
    │   │   └── UpstreamTimeout   connect or whole-request timeout
    │   └── AnswerNotJson         JSON mode, and the answer held no JSON object: ask again
    │       └── AnswerOffSchema   a JSON schema was asked for, the object does not match it
    │           └── ToolCallOffSchema  tools were offered, and a call is off its function's
    │                                  schema (or a required call is missing)
    └── PermanentError            retrying cannot help
        ├── ConsentMissing        the site asked for the consent checkbox: a configuration error
        ├── ContentRefused        the prompt was flagged (prohibited words)
        ├── UnknownModel          the request's model is not shaped like a model name
        └── UpstreamRejected      any other refusal the site spells out

Each class also says what it tells about the identity (``verdict``) and whether
the cached session must be dropped (``drops_session``). Every failure is charged to
the identity that carried it: even an ambiguous one (a plain 502 may be the site's
or the proxy's) makes it a suspect, and an identity that keeps failing while its
successes do not wash the suspicion away is cooled like any other.
"""

from __future__ import annotations

import enum
from typing import ClassVar

from contract.errors import ServiceError


class Verdict(enum.StrEnum):
    """What an outcome says about the identity (proxy, or the worker's own address)."""

    NONE = "none"  # says nothing about the identity
    SUSPECT = "suspect"  # may be the identity's fault: cooled if it keeps failing
    COOL = "cool"  # the site asked it to wait
    QUARANTINE = "quarantine"  # the site blocked it
    DOWN = "down"  # the proxy itself failed


class UpstreamError(ServiceError):
    """Base of every failure of the exchange."""

    retryable: ClassVar[bool] = False
    verdict: ClassVar[Verdict] = Verdict.NONE
    drops_session: ClassVar[bool] = False

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after = retry_after

    @property
    def kind(self) -> str:
        return type(self).__name__


class RetryableError(UpstreamError):
    """Worth another attempt, possibly through another identity."""

    retryable = True


class SessionStale(RetryableError):
    """The site rejected the nonce ("Security check", "Invalid nonce", "Nonce verification…")."""

    drops_session = True


class RateLimited(RetryableError):
    """HTTP 429; ``retry_after`` holds the seconds the site asked for, if it said."""

    verdict = Verdict.COOL


class QuotaExceeded(RetryableError):
    """``tokenLimitReached``: this exit IP used its quota."""

    verdict = Verdict.COOL


class Blocked(RetryableError):
    """HTTP 403 challenge page or "You are not allowed to access this feature."."""

    verdict = Verdict.QUARANTINE
    drops_session = True


class ProxyFault(RetryableError):
    """The proxy refused the connection, wanted authentication (407) or answered 502."""

    verdict = Verdict.DOWN
    drops_session = True


class HandshakeFailed(RetryableError):
    """The site page carried no nonce or post id, so no session could be made."""

    verdict = Verdict.SUSPECT


class UpstreamHiccup(RetryableError):
    """5xx, connection reset, a non-JSON or empty reply: transient, retry with backoff."""

    verdict = Verdict.SUSPECT


class UpstreamTimeout(UpstreamHiccup):
    """No connection or no complete reply within the configured timeouts."""


class AnswerNotJson(RetryableError):
    """JSON mode (``response_format`` ``json_object``) and the answer held no JSON object.

    Says nothing about the identity: the model did not comply, and may on another try.
    """


class AnswerOffSchema(AnswerNotJson):
    """``response_format`` ``json_schema``, and the answer's JSON object does not match the
    schema (the message says where). Asked again, under its own retry budget."""


class ToolCallOffSchema(AnswerOffSchema):
    """Tools were offered, and the answer's calls do not match them: a function not offered,
    arguments off its schema, another function than ``tool_choice`` names, or no call where
    one is required (the message says where). Asked again, under its own retry budget."""


class PermanentError(UpstreamError):
    """Retrying cannot help; the job fails with this error."""


class ConsentMissing(PermanentError):
    """The site answered "Du musst das Kästchen anklicken!": the consent field is missing."""


class ContentRefused(PermanentError):
    """The site refused the prompt's content (prohibited words, flagged message)."""


class UnknownModel(PermanentError):
    """The request's model is not shaped like a model name (which names are accepted is the
    producer's to say, when it enqueues: ``contract.model_map``)."""


class UpstreamRejected(PermanentError):
    """The site refused the request with a reason we do not otherwise recognise."""
