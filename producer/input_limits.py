"""The limits of a prompts input as a stream: its size, each line's size, where a BOM may be.

A whole input over ``max_input_bytes`` is refused before it is read (a file) or as
soon as it sends more (stdin), with ``InputTooLargeError``. A line longer than
``max_line_bytes`` (12 bytes per prompt character, the longest escape of one, plus
64 KiB for the rest) is refused unread, and so is a line past the first that starts
with a byte order mark. Blank lines are skipped but keep their line numbers; a
trailing ``\\r`` (CRLF line ends) is fine.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO

from producer.input_problems import InputFileError

LINE_BYTES_PER_PROMPT_CHAR = 12  # "\ud83d\ude00": the longest JSON escape of one character
LINE_SLACK_BYTES = 64 * 1024  # keys, custom_id, parameters, text-part wrappers
MAX_INPUT_BYTES_SETTING = "CHATGPTES_MAX_INPUT_BYTES"
BYTE_ORDER_MARK = "\ufeff"


class InputTooLargeError(InputFileError):
    """An input over ``max_input_bytes``: a file refused before it is read, stdin cut short.

    ``size`` is the file's size, or None when only "more than ``limit``" is known.
    """

    def __init__(self, source: str, limit: int, size: int | None = None) -> None:
        self.limit = limit
        self.size = size
        where = f"the limit ({MAX_INPUT_BYTES_SETTING})"
        if size is None:
            what = f"sent more than {limit:,} bytes, {where}; reading stopped there"
        else:
            what = f"is {size:,} bytes, more than {limit:,} bytes, {where}"
        message = f"{source} {what}: split it into smaller files, or raise the limit"
        super().__init__(source, (), message=message)


def max_line_bytes(max_prompt_chars: int) -> int:
    """The longest line accepted: enough for a full prompt written all in escapes."""
    return LINE_BYTES_PER_PROMPT_CHAR * max_prompt_chars + LINE_SLACK_BYTES


@contextmanager
def opened_lines(path_or_dash: str, max_input_bytes: int | None) -> Iterator[Iterator[str]]:
    """The input's lines as text (``-`` reads stdin), held to ``max_input_bytes``.

    None: no limit. A directory raises ``IsADirectoryError`` naming it; a missing or
    unreadable file raises the ``OSError`` from ``open``. A byte that is not UTF-8 is
    kept (as a lone surrogate) for ``check_line`` to report on its line.
    """
    if max_input_bytes is not None and max_input_bytes < 1:
        raise ValueError(f"max_input_bytes must be positive, got {max_input_bytes}")
    if path_or_dash == "-":
        yield iter(_stdin_lines(max_input_bytes))
        return
    if os.path.isdir(path_or_dash):
        raise IsADirectoryError(errno.EISDIR, "a directory, not a prompts file", path_or_dash)
    with open(path_or_dash, "rb") as stream:
        _check_file_size(stream, path_or_dash, max_input_bytes)
        yield _decoded(_limited(stream, path_or_dash, max_input_bytes))


def refused_unread(text: str, max_prompt_chars: int) -> str | None:
    """Why a line is refused before it is parsed (a stray BOM, a huge line), if it is."""
    if text[0] == BYTE_ORDER_MARK:
        return (
            "starts with a byte order mark (U+FEFF), which only a file's first line may "
            "have: were two files joined?"
        )
    size, limit = len(text.encode("utf-8", "surrogatepass")), max_line_bytes(max_prompt_chars)
    if size <= limit:
        return None
    return (
        f"line is {size:,} bytes long; the limit is {limit:,} bytes "
        f"({LINE_BYTES_PER_PROMPT_CHAR} bytes per character of the {max_prompt_chars:,}-"
        "character prompt limit, plus 64 KiB)"
    )


def _check_file_size(stream: IO[bytes], source: str, max_input_bytes: int | None) -> None:
    """Refuses a regular file over the limit before reading it (a pipe is counted as read)."""
    if max_input_bytes is None:
        return
    status = os.fstat(stream.fileno())
    if stat.S_ISREG(status.st_mode) and status.st_size > max_input_bytes:
        raise InputTooLargeError(source, max_input_bytes, status.st_size)


def _limited(stream: IO[bytes], source: str, max_input_bytes: int | None) -> Iterator[bytes]:
    """The stream's lines, stopping with ``InputTooLargeError`` once it is over the limit."""
    if max_input_bytes is None:
        yield from stream
        return
    read = 0
    while raw := stream.readline(max_input_bytes - read + 1):
        read += len(raw)
        if read > max_input_bytes:
            raise InputTooLargeError(source, max_input_bytes)
        yield raw


def _stdin_lines(max_input_bytes: int | None) -> Iterable[str]:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is not None:
        return _decoded(_limited(buffer, "<stdin>", max_input_bytes))
    return sys.stdin if max_input_bytes is None else _limited_text(sys.stdin, max_input_bytes)


def _limited_text(stream: Iterable[str], max_input_bytes: int) -> Iterator[str]:
    """A text-only stdin's lines, counted in UTF-8 bytes like a binary one."""
    read = 0
    for text in stream:
        read += len(text.encode("utf-8", "surrogatepass"))
        if read > max_input_bytes:
            raise InputTooLargeError("<stdin>", max_input_bytes)
        yield text


def _decoded(raw_lines: Iterable[bytes]) -> Iterator[str]:
    # surrogateescape keeps a bad byte on its own line, where check_line reports it
    for raw in raw_lines:
        yield raw.decode("utf-8", "surrogateescape")
