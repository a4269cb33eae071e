"""The fast path agrees with the thorough one on every line hypothesis can make up.

``check_line`` is the truth. ``fast_check_line`` may decline any line (the thorough
path then words its problems), but a line it accepts must be one ``check_line``
accepts, with the same fields. Lines are made near the valid ones (where the fast
path's colon count matters) and rendered the ways JSON can be written: any
whitespace, any character escaped, keys repeated, odd unicode, lone surrogates.
"""

from __future__ import annotations

import json
import random
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from contract.model_map import DEFAULT_MAP
from producer.fast_lines import fast_check_line
from producer.line_checks import check_line


class Pairs(list):
    """A JSON object as written: its members in order, a key possibly more than once."""


KEYS = ["custom_id", "messages", "model", "method", "url", "body", "role", "content", "name",
        "type", "text", "temperature", "stop", "response_format", "n", "seed", "mesages",
        "a:b", ":", ""]  # fmt: skip
WORDS = ["user", "system", "assistant", "gpt-4o", "gpt-4", "gpt-9", "POST", "GET",
         "/v1/chat/completions", "json_object", "text", "image_url", " ", ""]  # fmt: skip
ODD = ':"\\{}[],\t\n\r\x00\x1f\x7f é€\u2028\u200b\ufeff😀\ud800\udc80\U0010ffff'
texts = st.text(alphabet=st.sampled_from(list(ODD) + list("ab:")), max_size=8) | st.text(max_size=6)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-2, 3)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.sampled_from(WORDS)
    | texts
)
keys = st.sampled_from(KEYS) | texts


def values(depth: int = 2) -> st.SearchStrategy[Any]:
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3) | st.lists(st.tuples(keys, inner), max_size=3).map(Pairs)
        ),
        max_leaves=depth * 3,
    )


rarely = st.integers(0, 7).map(lambda n: n == 0)
nice_texts = st.text(alphabet=st.sampled_from(list(ODD[:-3]) + list("ab:")), min_size=1, max_size=8)


@st.composite
def messages(draw: st.DrawFn) -> list[Any]:
    """A message list, mostly right: roles, string or text-part contents, the user's last."""
    found: list[Any] = []
    count = draw(st.integers(0, 3)) if draw(rarely) else draw(st.integers(1, 3))
    for n in range(count):
        role = draw(st.sampled_from(["system", "assistant", "user"]))
        if n == count - 1 and not draw(rarely):
            role = "user"
        if draw(rarely):
            role = draw(st.sampled_from(["tool", 1, None, "User"]))
        content: Any = draw(nice_texts | st.sampled_from(["hi", "a: b", "x\\u003ay"]))
        if draw(rarely):
            content = draw(
                st.sampled_from([" ", "", "\ud800"])
                | texts
                | st.lists(st.builds(lambda t: Pairs([("type", "text"), ("text", t)]), texts),
                           max_size=2)
                | values(1)
            )  # fmt: skip
        message = Pairs([("role", role), ("content", content)])
        if draw(rarely):
            message.append((draw(st.sampled_from(["name", "role", "content", "x"])), draw(texts)))
        found.append(Pairs(draw(st.permutations(message))) if draw(st.booleans()) else message)
    return found


@st.composite
def near_valid_lines(draw: st.DrawFn) -> Any:
    """A native or OpenAI line, at times with a member added, repeated or mistyped."""
    core = [("messages", draw(messages()))]
    if draw(st.booleans()):
        model = draw(st.sampled_from(["gpt-4o", "gpt-4", "gpt-4o-mini", "gp:t"]))
        core.append(("model", draw(st.sampled_from(["gpt-9", None, 3])) if draw(rarely) else model))
    if draw(st.booleans()):
        body = Pairs(core)
        body += draw(st.lists(st.tuples(st.sampled_from(
            ["temperature", "stop", "n", "seed", "response_format", "user", "metadata"]),
            st.sampled_from([0.5, 1, "a:b", ["x:", "y"], None]) | (scalars | values(1))),
            max_size=2))  # fmt: skip
        method, url = "POST", "/v1/chat/completions"
        if draw(rarely):
            method, url = draw(st.sampled_from([("GET", url), (method, "/v1/x"), (1, None)]))
        line = Pairs([("method", method), ("url", url), ("body", body)])
    else:
        line = Pairs(core)
    if draw(st.booleans()):
        custom_id = draw(nice_texts | st.sampled_from(["q1", "a:b"]))
        line.append(("custom_id", draw(st.sampled_from([" ", "", 7]) | texts) if draw(rarely)
                     else custom_id))  # fmt: skip
    if draw(rarely):
        line.append((draw(keys), draw(values(1))))
    if draw(rarely) and line:  # a member written twice, the same or not
        key, value = draw(st.sampled_from(list(line)))
        line.append((key, draw(st.just(value) | values(1))))
    return Pairs(draw(st.permutations(line))) if draw(st.booleans()) else line


def render(value: Any, rnd: random.Random) -> str:
    """JSON text for ``value`` with random spacing, escapes and key order as given."""
    space = rnd.choice(["", " ", "\t", "  ", "\r\n "])
    if isinstance(value, Pairs):
        members = [f"{render(k, rnd)}{space}:{rnd.choice(['', ' '])}{render(v, rnd)}"
                   for k, v in value]  # fmt: skip
        return "{" + space + ("," + space).join(members) + "}"
    if isinstance(value, list):
        return "[" + ("," + space).join(render(v, rnd) for v in value) + "]"
    if isinstance(value, str):
        return '"' + "".join(_char(c, rnd) for c in value) + '"'
    return json.dumps(value)


def _char(char: str, rnd: random.Random) -> str:
    code = ord(char)
    if char in '"\\' or code < 0x20:
        return json.dumps(char)[1:-1] if rnd.random() < 0.5 else f"\\u{code:04x}"
    if rnd.random() < 0.2:
        if code > 0xFFFF:
            high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
            return f"\\u{high:04x}\\u{low:04X}"
        return f"\\u{code:04x}" if rnd.random() < 0.5 else f"\\u{code:04X}"
    return char


def assert_agree(text: str, max_prompt_chars: int = 1000, check_line_model: bool = True) -> None:
    models = DEFAULT_MAP if check_line_model else None
    fast = fast_check_line(text, max_prompt_chars, models)
    if fast is None:
        return
    slow = check_line(text, max_prompt_chars, models=models)
    assert slow.reasons == [], f"the fast path accepted {text!r}, refused for {slow.reasons}"
    assert fast == slow, text


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    line=near_valid_lines(),
    rnd=st.randoms(use_true_random=False),
    max_prompt_chars=st.sampled_from([1000, 4]),
    check_line_model=st.booleans(),
)
@example(line=Pairs([("messages", [Pairs([("role", "user"), ("content", "a:b")])])]),
         rnd=random.Random(0), max_prompt_chars=1000, check_line_model=True)  # fmt: skip
def test_the_fast_path_accepts_only_what_the_thorough_one_does(
    line: Any, rnd: random.Random, max_prompt_chars: int, check_line_model: bool
) -> None:
    assert_agree(render(line, rnd), max_prompt_chars, check_line_model)


@settings(max_examples=300, deadline=None)
@given(value=values(3), rnd=st.randoms(use_true_random=False))
def test_any_json_value_is_never_taken_by_the_fast_path_alone(
    value: Any, rnd: random.Random
) -> None:
    assert_agree(render(value, rnd))


@settings(max_examples=300, deadline=None)
@given(line=near_valid_lines(), rnd=st.randoms(use_true_random=False), cut=st.integers(0, 40))
def test_a_line_cut_short_or_padded_agrees_too(line: Any, rnd: random.Random, cut: int) -> None:
    text = render(line, rnd)
    assert_agree(text[: len(text) - cut])
    assert_agree(" " + text + " \r")


def test_valid_lines_do_take_the_fast_path() -> None:
    """The property above would hold for a fast path that declines everything: it does not."""
    rnd = random.Random(1)
    line = Pairs([("custom_id", "q:1"), ("messages", [Pairs([("role", "user"),
                                                          ("content", "é: 😀")])])])  # fmt: skip
    for _ in range(20):
        text = render(line, rnd)
        assert fast_check_line(text, 1000, True) is not None or "\\u003" in text.lower(), text
