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


def test_azr_train_runs_one_step_on_the_default_model(tmp_path, capsys):
    """`azr train` as the README runs it, cut to one small step: the default
    model (SmolLM2-135M-Instruct, converted into the cache), the trainer's own
    sandbox, the quickstart preset. The run writes its config, metrics for all
    six (task type, role) batches and a checkpoint that loads."""
    import json

    import numpy as np

    from azr.model import Model

    out = tmp_path / "run"
    argv = ["train", "--preset", "quickstart", "--steps", "1", "--out", str(out), "--no-progress"]
    for s in ("batch_size=1", "n_learnability=2", "max_new_tokens_propose=48", "max_new_tokens_solve=32",
              "seed_rounds=0", "seed_min=0", "k_references=1"):
        argv += ["--set", s]
    assert cli.main(argv) == 0, capsys.readouterr().err
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in lines] == [1]
    m = lines[0]
    for kind in ("deduction", "abduction", "induction"):
        for role in ("propose", "solve"):
            assert m["tasks"][kind][role]["count"] >= 1, (kind, role, m["tasks"][kind][role])
    assert m["generated_tokens"] > 0 and np.isfinite(m["grad_norm"] or 0.0)
    saved = (out / "config.toml").read_text()
    assert 'model = "SmolLM2-135M-Instruct"' in saved and "batch_size = 1" in saved, saved
    ck = out / "checkpoints" / "step_000001" / "model"
    assert Model.from_pretrained(ck).config.hidden_size == 576
