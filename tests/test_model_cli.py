"""The `azr` console entry point and its `demo` subcommand."""
from __future__ import annotations

import re

import pytest

from azr import cli


def test_demo_trains_and_loss_falls(capsys):
    rc = cli.main(["demo", "--steps", "25", "--batch", "4", "--seq-len", "24"])
    out = capsys.readouterr().out
    m = re.search(r"loss ([0-9.]+) -> ([0-9.]+) in 25 steps", out)
    assert m, out
    first, last = float(m.group(1)), float(m.group(2))
    assert rc == 0
    assert first > 3.5  # starts near ln(64)
    assert last < first - 0.5


def test_dispatcher_lists_commands_and_rejects_unknown(capsys):
    assert cli.main([]) == 2
    assert "demo" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        cli.main(["no-such-command"])
    assert set(cli.COMMANDS) >= {"demo"}


def test_demo_rejects_bad_arguments(capsys):
    assert cli.main(["demo", "--steps", "0"]) == 2
    assert "--steps" in capsys.readouterr().err
