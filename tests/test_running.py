"""How a command ends: its one error line is masked, escaped and bounded."""

from __future__ import annotations

import pytest

from chatgptes.running import EXIT_ERROR, fail


def test_an_error_is_masked_escaped_and_bounded(capsys: pytest.CaptureFixture[str]) -> None:
    hostile = "no batch 'b\x1b[2J\x1b]0;PWNED\x07' at redis://TOKENSECRET@h:1 " + "x" * 20_000
    with pytest.raises(SystemExit) as ended:
        fail(hostile + "\n  line 2: fine", EXIT_ERROR)
    assert ended.value.code == EXIT_ERROR
    said = capsys.readouterr().err
    assert said.startswith("error: no batch 'b\\x1b[2J\\x1b]0;PWNED\\x07' at redis://***@h:1 ")
    first, second = said.rstrip("\n").split("\n")
    assert len(first.encode()) <= 4096 and "characters cut" in first
    assert second == "  line 2: fine" and "TOKENSECRET" not in said
