"""TrainerConfig and EvalConfig: presets, TOML, CLI overrides, direct construction and their error messages."""
from __future__ import annotations

import pytest

from azr.config import PRESETS, TrainerConfig


def test_presets():
    p = TrainerConfig.preset("paper")
    assert (p.batch_size, p.n_learnability, p.k_references, p.lr, p.max_grad_norm) == (64, 8, 6, 1e-6, 1.0)
    q = TrainerConfig.preset("quickstart", steps=3)
    assert q.batch_size < p.batch_size and q.steps == 3
    with pytest.raises(ValueError, match="unknown preset 'tiny'.*paper"):
        TrainerConfig.preset("tiny")
    assert set(PRESETS) == {"paper", "quickstart", "cpu"}
    for name in PRESETS:
        TrainerConfig.preset(name).validate()
    c = TrainerConfig.preset("cpu")
    # the learning preset: a 135M model's learning rate, not the 7B paper's; several samples per
    # (task, role) group; anti-collapse filter; a time budget with held-out evaluation
    assert c.lr >= 1e-5 and c.batch_size >= 8 and c.reject_trivial and c.max_minutes == 120
    assert c.eval_every > 0 and c.eval_tasks == ["heldout-dev"]
    # induction left out (its proposals were never valid in the sweep) and triplets shared across types
    assert c.task_types == ["deduction", "abduction"] and c.share_triplets
    # one template may not fill the buffer, and the weights kept are those the dev set chose (run 3)
    assert c.max_same_shape == 4 and c.keep_best


def test_overrides_convert_types():
    c = TrainerConfig.preset("quickstart")
    c.override(["lr=2e-6", "batch_size=3", "progress=false", "seed_files=a.jsonl,b.jsonl",
                "aggregation=sequence-mean", 'monitor_patterns={ x = "y" }', "model=some/dir"])
    assert c.lr == 2e-6 and c.batch_size == 3 and c.progress is False
    assert c.seed_files == ["a.jsonl", "b.jsonl"] and c.aggregation == "sequence-mean"
    assert c.monitor_patterns == {"x": "y"} and c.model == "some/dir"


@pytest.mark.parametrize("item,msg", [
    ("bach_size=3", "unknown field 'bach_size' \\(did you mean 'batch_size'\\?\\)"),
    ("batch_size=three", "field 'batch_size' expects int"),
    ("aggregation=sum", "field 'aggregation' = 'sum' is not one of \\('token-mean', 'sequence-mean'\\)"),
    ("batch_size=0", "'batch_size' must be >= 1"),
    ("lr=-1", "'lr' must be > 0"),
    ("progress=maybe", "field 'progress' expects bool"),
    ("novalue", "must look like field=value"),
    ("top_p=1.5", "'top_p' must be in"),
])
def test_override_errors_name_the_field(item, msg):
    with pytest.raises(ValueError, match=msg):
        TrainerConfig.preset("quickstart").override([item])


def test_toml_roundtrip_and_errors(tmp_path):
    c = TrainerConfig.preset("quickstart", seed_files=["x.jsonl"], monitor_patterns={"k": "a\\d"}, lr=3e-7)
    p = tmp_path / "c.toml"
    p.write_text(c.to_toml())
    assert TrainerConfig.from_toml(p) == c
    p.write_text('preset = "paper"\nsteps = 7\n')
    c2 = TrainerConfig.from_toml(p)
    assert c2.steps == 7 and c2.batch_size == 64
    p.write_text('stpes = 7\n')
    with pytest.raises(ValueError, match="c.toml: unknown field 'stpes'"):
        TrainerConfig.from_toml(p)
    p.write_text('steps = "seven"\n')
    with pytest.raises(ValueError, match="field 'steps' expects int"):
        TrainerConfig.from_toml(p)
    p.write_text('steps = \n')
    with pytest.raises(ValueError, match="not valid TOML"):
        TrainerConfig.from_toml(p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TrainerConfig.from_toml(tmp_path / "none.toml")


def test_a_config_built_directly_is_checked_like_a_preset():
    """TrainerConfig(...) converts and checks its fields as preset() and TOML do: the same
    conversions, and errors naming the field instead of a TypeError from a comparison."""
    from pathlib import Path

    import numpy as np

    c = TrainerConfig(lr="1e-5", steps="3", out=Path("runs") / "x", seed_files=("a.jsonl",), seed=np.int64(4))
    assert (c.lr, c.steps, c.out, c.seed_files, c.seed) == (1e-5, 3, str(Path("runs") / "x"), ["a.jsonl"], 4)
    assert type(c.seed) is int
    assert TrainerConfig.preset("quickstart", lr="1e-5").lr == c.lr
    for kw, msg in [(dict(lr="fast"), "TrainerConfig: field 'lr' expects float, got 'fast'"),
                    (dict(batch_size=True), "TrainerConfig: field 'batch_size' expects int, got True"),
                    (dict(task_types="deduction,bogus"), "config field 'task_types' = \\['deduction', 'bogus'\\]"),
                    (dict(steps=0), "config field 'steps' must be >= 1, got 0"),
                    (dict(lr=0), "config field 'lr' must be > 0"),
                    (dict(aggregation="sum"), "config field 'aggregation' = 'sum' is not one of")]:
        with pytest.raises(ValueError, match=msg):
            TrainerConfig(**kw)
    # a field changed after construction is checked when the config is used (Trainer calls validate)
    c.lr = "slow"
    with pytest.raises(ValueError, match="config: field 'lr' expects float, got 'slow'"):
        c.validate()


def test_eval_config_built_directly_is_checked():
    from azr.evaluation import EvalConfig

    c = EvalConfig(limit="5", pass_k="1,2", n_samples="2", tasks=["gsm8k"], temperature=1)
    assert (c.limit, c.pass_k, c.n_samples, c.tasks, c.temperature) == (5, (1, 2), 2, ("gsm8k",), 1.0)
    assert EvalConfig(limit=None).limit is None
    for kw, msg in [(dict(limit="five"), "EvalConfig: field 'limit' expects int or None, got 'five'"),
                    (dict(pass_k=["a"]), "EvalConfig: field 'pass_k' expects tuple of int"),
                    (dict(limit=-1), "EvalConfig.limit must be >= 0, got -1"),
                    (dict(temperature=-1), "EvalConfig.temperature must be >= 0"),
                    (dict(pass_k=(1, 4), n_samples=2), "EvalConfig.pass_k 4 is larger than EvalConfig.n_samples")]:
        with pytest.raises(ValueError, match=msg):
            EvalConfig(**kw)


# ------------------------------------------------------- the config reference
def test_every_field_documented_and_reference_up_to_date():
    import dataclasses
    from pathlib import Path

    from azr.config import config_reference, field_table
    from azr.evaluation import EvalConfig

    for cls in (TrainerConfig, EvalConfig):
        for f in dataclasses.fields(cls):
            assert len(f.metadata.get("help", "")) > 10, f"{cls.__name__}.{f.name} has no help text"
            assert f"\n{f.name}: " in cls.__doc__  # help() and Jupyter's ? show it
    assert TrainerConfig.help("lr").startswith("AdamW learning rate")
    with pytest.raises(ValueError, match="'lr'"):
        TrainerConfig.help("learning_rate")
    ref = config_reference()
    for name, _, _, hlp in field_table(TrainerConfig) + field_table(EvalConfig):
        assert f"| `{name}` |" in ref and hlp.replace("|", "/") in ref
    doc = Path(__file__).resolve().parent.parent / "docs" / "config.md"
    assert doc.read_text(encoding="utf-8") == ref, (
        "docs/config.md is out of date: python -c \"import azr.config as c; "
        "print(c.config_reference(), end='')\" > docs/config.md")


def test_trl_names_get_ours_in_the_error():
    from azr.config import TRL_NAMES

    for trl, (ours, _) in TRL_NAMES.items():
        assert ours in TrainerConfig.field_names(), trl
        assert trl not in TrainerConfig.field_names(), trl
        with pytest.raises(ValueError, match=f"TRL's name; here it is '{ours}'"):
            TrainerConfig.preset("quickstart").override([f"{trl}=1"])
    with pytest.raises(ValueError, match="did you mean 'batch_size'"):
        TrainerConfig.preset("quickstart").override(["bach_size=1"])


def test_show_config_prints_commented_toml_that_reads_back(tmp_path, capsys):
    from azr.trainer import cli_main

    assert cli_main(["train", "--preset", "cpu", "--set", "lr=2e-5", "--out", str(tmp_path / "r"),
                     "--show-config"]) == 0
    text = capsys.readouterr().out
    assert "# AdamW learning rate" in text and "\nlr = 2e-05\n" in text
    (tmp_path / "c.toml").write_text(text, encoding="utf-8")
    want = TrainerConfig.preset("cpu", lr=2e-5, out=str(tmp_path / "r"))
    assert TrainerConfig.from_toml(tmp_path / "c.toml") == want
    assert not (tmp_path / "r").exists()  # nothing was started
    # --help lists every field with its default
    with pytest.raises(SystemExit):
        cli_main(["train", "--help"])
    out = capsys.readouterr().out
    assert "  max_same_shape = 0\n" in out and "  lr = 1e-06\n" in out
