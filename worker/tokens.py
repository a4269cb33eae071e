"""Tokens as OpenAI would bill them: the chat messages in, the answer out.

chatgpt.es reports no usage, so the worker counts it with OpenAI's own encodings
(``o200k_base`` for the gpt-4o family, ``cl100k_base`` for gpt-4), and the chat
format's fixed cost per message (OpenAI's cookbook: 3 tokens a message, 3 to prime
the reply). bpe-openai carries the encodings in the package (tiktoken fetches them
from the internet on first use, which a worker may not reach). The prompt counted
is the messages as given, not the text the site receives: it is what an OpenAI bill
would show for the same request.
"""

from __future__ import annotations

from functools import cache

import bpe_openai

from contract.models import PromptRequest, Usage

ENCODINGS = {"gpt-4": "cl100k_base", "gpt-4o": "o200k_base", "gpt-4o-mini": "o200k_base"}
TOKENS_PER_MESSAGE = 3
TOKENS_TO_PRIME_THE_REPLY = 3


@cache
def _encoding(model: str) -> bpe_openai.Encoding:
    return bpe_openai.get_encoding(ENCODINGS.get(model, "o200k_base"))


def count(text: str, model: str) -> int:
    return len(_encoding(model).encode(text))


def usage_of(request: PromptRequest, answer: str) -> Usage:
    prompt = TOKENS_TO_PRIME_THE_REPLY + sum(
        TOKENS_PER_MESSAGE
        + count(message.role, request.model)
        + count(message.content, request.model)
        for message in request.messages
    )
    completion = count(answer, request.model)
    return Usage(
        prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion
    )
