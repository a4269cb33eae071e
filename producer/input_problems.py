"""Why an input was refused: each bad line's problems, and the report a user reads."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from contract.errors import ServiceError

MAX_LISTED_PROBLEMS = 100


@dataclass(frozen=True)
class LineProblem:
    """Why one line was rejected; a line may have several."""

    line_number: int
    reason: str


class InputFileError(ServiceError, ValueError):
    """Raised when a prompts file has any bad line, or no prompts at all; carries every problem.

    ``message`` replaces the usual report, for an input refused whole.
    """

    def __init__(
        self, source: str, problems: Sequence[LineProblem], *, message: str | None = None
    ) -> None:
        self.source = source
        self.problems: tuple[LineProblem, ...] = tuple(problems)
        super().__init__(message or describe_problems(source, self.problems))


def describe_problems(source: str, problems: Sequence[LineProblem]) -> str:
    """The report a user reads: how many lines are bad, then each problem (at most 100)."""
    if not problems:
        return f"no prompts in {source}: it is empty or holds only blank lines"
    bad_lines = len({problem.line_number for problem in problems})
    noun = "line" if bad_lines == 1 else "lines"
    listed = [f"  line {p.line_number}: {p.reason}" for p in problems[:MAX_LISTED_PROBLEMS]]
    if len(problems) > MAX_LISTED_PROBLEMS:
        listed.append(f"  ... and {len(problems) - MAX_LISTED_PROBLEMS} more problems")
    return f"{bad_lines} bad {noun} in {source}:\n" + "\n".join(listed)
