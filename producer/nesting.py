"""How deep arrays and objects nest in a JSON text, found without parsing it.

``json.loads`` recurses once a level, so a hostile line or body of brackets would reach
Python's recursion limit (or take its time) before any check of ours could refuse it.
"""

from __future__ import annotations

import re

# a JSON string (possessive, so linear even unterminated) or a bracket
_TEXT_TOKENS = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
_BYTE_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)|[\[\]{}]', re.DOTALL)
# a token's first item: a character of a str, a byte's value of bytes; a string's is '"'
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1, ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nests_deeper(raw: str | bytes | bytearray, limit: int) -> bool:
    """Whether arrays and objects in ``raw`` nest more than ``limit`` deep (strings skipped)."""
    if isinstance(raw, str):
        if raw.count("[") + raw.count("{") <= limit:
            return False
        tokens = _TEXT_TOKENS.findall(raw)
    else:
        if raw.count(b"[") + raw.count(b"{") <= limit:
            return False
        tokens = _BYTE_TOKENS.findall(raw)
    depth = 0
    for token in tokens:
        depth += _STEP.get(token[0], 0)
        if depth > limit:
            return True
    return False
