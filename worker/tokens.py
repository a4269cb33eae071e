"""Tokens as OpenAI would bill them: the chat messages in, the answer out; answers cut to
``max_tokens``.

chatgpt.es reports no usage, so the worker counts it with OpenAI's own encodings,
chosen by the model name as tiktoken chooses them (``o200k_base`` for the gpt-4o,
gpt-4.1, o-series and later families, ``cl100k_base`` for gpt-4 and gpt-3.5), and the
chat format's fixed cost per message (OpenAI's cookbook: 3 tokens a message, 3 to
prime the reply). bpe-openai carries the encodings in the package (tiktoken fetches
them from the internet on first use, which a worker may not reach). The prompt
counted is the messages as given (and the tools offered), not the text the site
receives: it is what an OpenAI bill would show for the same request.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from contract.models import PromptRequest, Usage
from worker.tool_calls import calls_text

if TYPE_CHECKING:
    import bpe_openai

O200K, CL100K = "o200k_base", "cl100k_base"
# The first prefix a model name starts with picks its encoding (tiktoken's table).
ENCODING_BY_PREFIX: tuple[tuple[str, str], ...] = (
    ("gpt-4o", O200K),
    ("chatgpt-4o", O200K),
    ("gpt-4.1", O200K),
    ("gpt-4.5", O200K),
    ("gpt-5", O200K),
    ("o1", O200K),
    ("o3", O200K),
    ("o4", O200K),
    ("gpt-4", CL100K),
    ("gpt-3.5", CL100K),
)
TOKENS_PER_MESSAGE = 3
TOKENS_TO_PRIME_THE_REPLY = 3


def encoding_name(model: str) -> str:
    return next((name for prefix, name in ENCODING_BY_PREFIX if model.startswith(prefix)), O200K)


@cache
def _encoding(model: str) -> bpe_openai.Encoding:
    # Loaded at the first count (half a second): `chatgptes config` reads the worker's
    # settings, which name this module, and never counts a token.
    import bpe_openai

    return bpe_openai.get_encoding(encoding_name(model))


def count(text: str, model: str) -> int:
    """Tokens in ``text`` read as ordinary text: a prompt or an answer that holds
    ``<|endoftext|>`` counts it as the characters it is (the tokenizer's ``encode``
    raises on it, and a usage count must not fail a prompt the site answered)."""
    return len(_encoding(model).encode_ordinary(text))


def cut(text: str, max_tokens: int, model: str) -> tuple[str, bool]:
    """``text`` cut after its first ``max_tokens`` tokens (whole if it is no longer), and
    whether it was cut.

    A character split between two tokens is left out, and the cut text counts at most
    ``max_tokens`` tokens when encoded again.
    """
    encoding = _encoding(model)
    tokens = encoding.encode_ordinary(text)
    if len(tokens) <= max_tokens:
        return text, False
    kept = encoding.decode_bytes(tokens[:max_tokens]).decode("utf-8", "ignore")
    while kept and len(encoding.encode_ordinary(kept)) > max_tokens:  # BPE may merge differently
        kept = kept[:-1]
    return kept, True


def usage_of(request: PromptRequest, answer: str) -> Usage:
    """``answer``: the text of the answer, or of the calls it makes (as JSON). The tools
    offered and a history's calls count as their JSON text (OpenAI's own framing of them
    is not published: a close count, not an exact one)."""
    model = request.model
    prompt = TOKENS_TO_PRIME_THE_REPLY + sum(
        TOKENS_PER_MESSAGE
        + count(message.role, model)
        + count(message.content, model)
        + (count(calls_text(message.tool_calls), model) if message.tool_calls else 0)
        for message in request.messages
    )
    if request.params.tools is not None:
        prompt += count(request.params.tools, model)
    completion = count(answer, model)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
