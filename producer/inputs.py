"""Prompt files in: every line of an input checked, as one file, before anything runs.

Each non-blank line is one prompt (its form and checks: ``producer.line_checks``,
taken fast by ``producer.fast_lines`` when it is valid); the input as a stream has
its limits (``producer.input_limits``). What only the whole file can say is said
here: every ``custom_id`` is used once (a line without one is named by its number),
and an input with any bad line, or with no prompt at all, yields nothing:
``InputFileError`` lists every problem, by line number.

- ``validate_lines``: the prompts of an iterable of lines, or all its problems;
- ``parse_prompt_lines`` and ``read_prompt_file``: the prompts, or ``InputFileError``;
- ``PromptValidator`` and ``prompt_blocks``: the same a block of lines at a time, so a
  million lines are checked and enqueued in bounded memory.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from contract.model_map import DEFAULT_MAP, ModelMap
from contract.models import Message
from producer.fast_lines import fast_check_line
from producer.input_limits import (
    BYTE_ORDER_MARK,
    InputTooLargeError,
    max_line_bytes,
    opened_lines,
    refused_unread,
)
from producer.input_problems import (
    MAX_LISTED_PROBLEMS,
    InputFileError,
    LineProblem,
    describe_problems,
)
from producer.line_checks import MAX_NESTING, check_line
from producer.params import NO_BODY_PARAMS

BLOCK_LINES = 5000  # lines checked (and then staged) at a time

__all__ = [
    "BLOCK_LINES",
    "MAX_LISTED_PROBLEMS",
    "MAX_NESTING",
    "InputFileError",
    "InputTooLargeError",
    "LineProblem",
    "LinesChecked",
    "PromptLine",
    "PromptValidator",
    "describe_problems",
    "max_line_bytes",
    "parse_prompt_lines",
    "prompt_blocks",
    "read_prompt_file",
    "source_name",
    "summarize_warnings",
    "validate_lines",
]


@dataclass(frozen=True)
class PromptLine:
    """One valid input line, ready to become a ``PromptRequest``.

    ``params`` holds the request parameters the worker honours (``stop`` as a list of
    strings, ``response_format`` ``{"type": "json_object"}``), as plain JSON values;
    ``warnings`` one sentence per parameter accepted but not honoured.
    """

    line_number: int
    custom_id: str
    messages: tuple[Message, ...]
    model: str
    params: Mapping[str, Any] = field(default_factory=lambda: NO_BODY_PARAMS.params, hash=False)
    warnings: tuple[str, ...] = ()
    site: str | None = None  # the site its own ``site`` names (a native line's)


@dataclass(frozen=True)
class LinesChecked:
    """An input checked whole: its prompts if every line is valid, else every problem."""

    prompts: list[PromptLine]
    problems: list[LineProblem]

    @property
    def ok(self) -> bool:
        return not self.problems and bool(self.prompts)


def validate_lines(
    lines: Iterable[str],
    *,
    default_model: str,
    max_prompt_chars: int,
    model_override: str | None = None,
    models: ModelMap = DEFAULT_MAP,
    sites: Collection[str] = (),
) -> LinesChecked:
    """Every line checked: the prompts (if none is bad), and every problem by line number.

    ``lines`` are text lines, numbered from 1, blank ones skipped but counted; a bad
    override or default model is one ``ValueError``. ``models``: the model names accepted
    (the settings' ``model_map()``); ``sites``: those a line's ``site`` may name (the
    settings' ``site_names()``).
    """
    validator = PromptValidator(
        default_model=default_model, max_prompt_chars=max_prompt_chars,
        model_override=model_override, models=models, sites=sites,
    )  # fmt: skip
    prompts = validator.check(lines)
    return LinesChecked([] if validator.problems else prompts, validator.problems)


def parse_prompt_lines(
    lines: Iterable[str],
    *,
    source: str = "<input>",
    default_model: str,
    max_prompt_chars: int,
    model_override: str | None = None,
    models: ModelMap = DEFAULT_MAP,
    sites: Collection[str] = (),
) -> list[PromptLine]:
    """Every prompt in ``lines``, or ``InputFileError`` listing every bad line.

    ``model_override`` replaces every line's model (a line's own ``model`` is then
    not checked); a bad override or default model is one ``ValueError``. Warnings
    about parameters accepted but not honoured are on each line; see
    ``summarize_warnings``.
    """
    checked = validate_lines(
        lines, default_model=default_model, max_prompt_chars=max_prompt_chars,
        model_override=model_override, models=models, sites=sites,
    )  # fmt: skip
    if not checked.ok:
        raise InputFileError(source, checked.problems)
    return checked.prompts


def read_prompt_file(
    path_or_dash: str,
    *,
    default_model: str,
    max_prompt_chars: int,
    model_override: str | None = None,
    max_input_bytes: int | None = None,
    models: ModelMap = DEFAULT_MAP,
    sites: Collection[str] = (),
) -> list[PromptLine]:
    """Every prompt in the file (``-`` reads stdin); see ``parse_prompt_lines``.

    ``max_input_bytes`` (the CLI passes ``CHATGPTES_MAX_INPUT_BYTES``; None: no limit)
    refuses a larger file before reading it, and stdin as soon as it sends more, with
    ``InputTooLargeError``. A directory raises ``IsADirectoryError`` naming it; a
    missing or unreadable file raises the ``OSError`` from ``open``.
    """
    with opened_lines(path_or_dash, max_input_bytes) as lines:
        return parse_prompt_lines(
            lines, source=source_name(path_or_dash), default_model=default_model,
            max_prompt_chars=max_prompt_chars, model_override=model_override, models=models,
            sites=sites,
        )  # fmt: skip


def source_name(path_or_dash: str) -> str:
    """How reports name an input: its path, or ``<stdin>`` for ``-``."""
    return "<stdin>" if path_or_dash == "-" else path_or_dash


def prompt_blocks(
    lines: Iterable[str], validator: PromptValidator, *, source: str, block_lines: int = BLOCK_LINES
) -> Iterator[list[PromptLine]]:
    """The prompts of ``lines``, a block of lines at a time, while every line so far is valid.

    After a bad line, the rest is still checked (every problem is reported) but nothing
    more is yielded; at the end, a bad input (or one without a prompt) raises
    ``InputFileError``, so whoever wrote the blocks already yielded must take them back.
    """
    remaining = iter(lines)
    while block := list(islice(remaining, block_lines)):
        prompts = validator.check(block)
        if prompts and not validator.problems:
            yield prompts
    if validator.problems or not validator.prompts:
        raise InputFileError(source, validator.problems)


class PromptValidator:
    """Checks the lines of one input in order, as one file.

    Each ``check`` call takes the next lines (blank ones too: they keep the numbering)
    and returns the valid prompts among them; the problems of every line so far are in
    ``problems``, the warnings of the accepted prompts counted in ``warnings``.
    """

    def __init__(
        self,
        *,
        default_model: str,
        max_prompt_chars: int,
        model_override: str | None = None,
        models: ModelMap = DEFAULT_MAP,
        sites: Collection[str] = (),
    ) -> None:
        self.sites = tuple(sites)  # what a line's ``site`` may name (empty: any site's name)
        self.fallback_model = _checked_fallback_model(default_model, model_override, models)
        self.model_override = model_override
        self.max_prompt_chars = max_prompt_chars
        self.problems: list[LineProblem] = []
        self.warnings: Counter[str] = Counter()
        self.prompts = 0
        self.lines = 0
        self._ids = _CustomIds()
        self._line_models = models if model_override is None else None  # None: not read
        self._quarter_line_limit = max_line_bytes(max_prompt_chars) // 4  # a character: 1-4 B

    def check(self, lines: Iterable[str]) -> list[PromptLine]:
        """The valid prompts among the next lines (numbered on from the last call)."""
        with _cyclic_gc_paused():
            return self._check(lines)

    def warning_summary(self) -> list[str]:
        """``summarize_warnings`` of every prompt accepted so far."""
        return [_warning_summary(warning, count) for warning, count in self.warnings.items()]

    def _check(self, lines: Iterable[str]) -> list[PromptLine]:
        prompts: list[PromptLine] = []
        max_prompt_chars, line_models = self.max_prompt_chars, self._line_models
        for text in lines:
            self.lines += 1
            line_number = self.lines
            if line_number == 1:
                text = text.removeprefix(BYTE_ORDER_MARK)
            if not text or text.isspace():
                continue
            if text[0] == BYTE_ORDER_MARK or len(text) > self._quarter_line_limit:
                refusal = refused_unread(text, max_prompt_chars)
                if refusal is not None:
                    self.problems.append(LineProblem(line_number, refusal))
                    continue
            line = fast_check_line(text, max_prompt_chars, line_models) or check_line(
                text, max_prompt_chars, models=line_models, sites=self.sites
            )
            if not line.is_object or line.custom_id_invalid:
                taken = None
            else:
                taken = self._ids.take(line.custom_id, line_number)
                if taken is not None:
                    line.reasons.append(taken)
            if line.reasons:
                self.problems.extend(LineProblem(line_number, reason) for reason in line.reasons)
                continue
            body_params = line.body_params
            prompts.append(
                PromptLine(
                    line_number,
                    line.custom_id or str(line_number),
                    line.messages,
                    self.model_override or line.model or self.fallback_model,
                    body_params.params,
                    body_params.warnings,
                    line.site,
                )
            )
            if body_params.warnings:
                self.warnings.update(body_params.warnings)
        self.prompts += len(prompts)
        return prompts


class _CustomIds:
    """Which ``custom_id``s are taken, and on which line.

    A line without one is named by its line number; those are kept as bits, not
    strings, so a million lines without ids cost 125 KB, not a dict of a million.
    """

    def __init__(self) -> None:
        self._given: dict[str, int] = {}
        self._defaulted = bytearray()  # bit n: line n took its number as its id

    def take(self, given: str | None, line_number: int) -> str | None:
        """Takes the line's id (given, or its number); why it cannot, if it is taken."""
        if given is None:
            default = str(line_number)
            earlier = self._given.get(default)
            if earlier is not None:
                return (
                    f"custom_id: not given, and the default (the line number, {default!r}) "
                    f"is already used on line {earlier}"
                )
            self._mark_defaulted(line_number)
            return None
        earlier = self._given.get(given)
        if earlier is not None:
            return f"custom_id: {given!r} is already used on line {earlier}"
        defaulted_line = self._defaulted_line(given)
        if defaulted_line is not None:
            return (
                f"custom_id: {given!r} is already the default id of line {defaulted_line}, "
                "which has no custom_id (a line without one is named by its line number)"
            )
        self._given[given] = line_number
        return None

    def _mark_defaulted(self, line_number: int) -> None:
        byte = line_number >> 3
        if byte >= len(self._defaulted):
            self._defaulted.extend(bytes(max(byte + 1 - len(self._defaulted), 4096)))
        self._defaulted[byte] |= 1 << (line_number & 7)

    def _defaulted_line(self, custom_id: str) -> int | None:
        """The line whose default id ``custom_id`` is, if such a line took it."""
        if not (custom_id.isascii() and custom_id.isdigit()) or custom_id[0] == "0":
            return None
        number = int(custom_id)
        byte = number >> 3
        if byte < len(self._defaulted) and self._defaulted[byte] >> (number & 7) & 1:
            return number
        return None


def summarize_warnings(lines: Sequence[PromptLine]) -> list[str]:
    """One line per distinct warning, with how many prompts it concerns, first seen first.

    E.g. ``"temperature (120 prompts): accepted but not honoured: chatgpt.es has no
    such setting"``.
    """
    counts = Counter(warning for line in lines for warning in line.warnings)
    return [_warning_summary(warning, count) for warning, count in counts.items()]


def _warning_summary(warning: str, count: int) -> str:
    prompts = f"{count:,} prompt{'' if count == 1 else 's'}"
    name, is_, rest = warning.partition(" is ")  # "<parameter> is accepted but <why>"
    return f"{name} ({prompts}): {rest}" if is_ else f"{warning} ({prompts})"


def _checked_fallback_model(
    default_model: str, model_override: str | None, models: ModelMap
) -> str:
    if model_override is not None:
        try:
            return models.check(model_override)
        except ValueError as exc:
            raise ValueError(f"model override: {exc}") from None
    try:
        return models.check(default_model)
    except ValueError as exc:
        raise ValueError(f"default model: {exc}") from None


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    # parsing builds only acyclic objects, which the cyclic GC would rescan: ~40% of the time
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
