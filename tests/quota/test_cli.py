"""``smartpip quota history``: the command line (its report is tested with the app)."""

from __future__ import annotations

import pytest

from smartpip.cli import EXIT_CONFIG
from smartpip.cli import main as cli_main


def test_quota_history_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["quota", "history", "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "usage: smartpip quota history" in out and "--days" in out


@pytest.mark.parametrize("days", ["0", "-3", "many"])
def test_quota_history_refuses_anything_but_a_positive_number_of_days(
    days: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["quota", "history", "--days", days])
    assert exited.value.code == EXIT_CONFIG
    assert "--days" in capsys.readouterr().err
