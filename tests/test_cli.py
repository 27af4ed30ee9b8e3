"""The `azr` entry point dispatches to each layer's own command-line parser."""
import pytest

from azr import cli


@pytest.mark.parametrize("command, flag", [("train", "--preset"), ("eval", "--tasks")])
def test_delegated_subcommands_show_their_own_help(command, flag, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert flag in capsys.readouterr().out


def test_top_level_help_lists_every_subcommand(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for name in ("train", "eval", "demo"):
        assert name in out


def test_unknown_subcommand_is_an_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["bogus"])
    assert exc.value.code == 2
