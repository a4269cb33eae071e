"""Which failures a new try may mend, and which it would only repeat.

A prompt fails for good when retrying cannot help (the worker's ``PermanentError``
branch of ``worker.errors``: the site refused it in words, or asks for a setting), or
when it never ran as asked (its request cannot be read). Everything else, a rate limit,
a timeout, a crashed worker, may well succeed on a new try. The console's retry offers
only those, and says how many it leaves out and why; the names are checked against
the worker's error tree by ``tests/test_retries.py`` (a producer never imports the worker).
"""

from __future__ import annotations

# Error type → why a new try would fail the same way.
NOT_RETRIED: dict[str, str] = {
    "ConsentMissing": "the site asks for its consent checkbox: a configuration error",
    "ContentRefused": "the site refused the prompt's content",
    "UnknownModel": "the request's model is not a model name",
    "UpstreamRejected": "the site refused the prompt, in words",
    "BadRequestData": "its stored request cannot be read",
    "Expired": "its batch's completion window ended",
    "Cancelled": "it was cancelled",
}


def may_succeed_again(error_type: str) -> bool:
    """Whether a prompt that failed with ``error_type`` is worth another try."""
    return error_type not in NOT_RETRIED


def why_not(error_type: str) -> str:
    return NOT_RETRIED.get(error_type, "")
