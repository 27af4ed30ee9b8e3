"""The `azr` entry point dispatches to each layer's own command-line parser."""
from pathlib import Path

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


# ------------------------------------------------------------- azr train --resume
def _fake_run(tmp_path, steps=2):
    """A finished `azr train` run of `steps` steps on the fake model of test_trainer."""
    from test_trainer import FakeAdamW, FakeExecutor, FakeModel

    from azr.trainer import cli_main

    out = tmp_path / "run"
    rc = cli_main(["train", "--preset", "quickstart", "--steps", str(steps), "--out", str(out), "--no-progress",
                   "--set", "batch_size=2", "--set", "n_learnability=2", "--set", "seed_rounds=0"],
                  model=FakeModel(), executor=FakeExecutor(), optimizer_factory=lambda m, c: FakeAdamW(m))
    assert rc == 0
    return out


def _no_model(path):
    raise AssertionError("the model was loaded")


@pytest.mark.parametrize("extra, named", [
    (["--preset", "paper"], "--preset"),
    (["--config", "x.toml"], "--config"),
    (["--out", "elsewhere"], "--out elsewhere"),
    (["--model", "m"], "--model"),
    (["--seed-file", "s.jsonl"], "--seed-file"),
    (["--overwrite"], "--overwrite"),
])
def test_resume_refuses_flags_it_would_ignore(tmp_path, capsys, extra, named):
    """`--resume RUN` continues RUN with its saved config and checkpoint: a flag
    that could not take effect is an error naming it, before any model loads."""
    from azr.trainer import cli_main

    out = _fake_run(tmp_path)
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(out), "--steps", "3", *extra], model_loader=_no_model) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"azr train: error: --resume {out} cannot be combined with {named}"), err
    assert (out / "metrics.jsonl").read_text() == before


def test_resume_with_steps_already_done_says_so(tmp_path, capsys):
    from azr.trainer import cli_main

    out = _fake_run(tmp_path)
    before = (out / "metrics.jsonl").read_text()
    capsys.readouterr()
    for argv in (["--steps", "2"], ["--steps", "1"], []):  # [] : the saved target, 2
        assert cli_main(["train", "--resume", str(out), *argv], model_loader=_no_model) == 0
        err = capsys.readouterr().err
        assert "already has 2 steps done" in err and "nothing to do" in err and "--steps N" in err, err
    # --out naming the run itself is no conflict
    assert cli_main(["train", "--resume", str(out), "--out", str(out)], model_loader=_no_model) == 0
    assert (out / "metrics.jsonl").read_text() == before
    # a spent time budget says so too
    import json

    ck = out / "checkpoints" / (out / "checkpoints" / "latest").read_text().strip() / "trainer_state.json"
    state = json.loads(ck.read_text())
    ck.write_text(json.dumps({**state, "train_seconds": 90.0}))
    capsys.readouterr()
    assert cli_main(["train", "--resume", str(out), "--steps", "9", "--set", "max_minutes=1.5"],
                    model_loader=_no_model) == 0
    err = capsys.readouterr().err
    assert "has used its training time (1.5 of max_minutes = 1.5): nothing to do" in err, err


# ------------------------------------------------------------- user mistakes: `azr <cmd>: error: ...`, status 2
def _unwritable(tmp_path, how):
    """A --out the user cannot write: inside a regular file, or in a read-only directory."""
    if how == "file":
        (tmp_path / "afile").write_text("x")
        return tmp_path / "afile" / "run"
    import os
    import tempfile

    if os.geteuid() == 0:  # root writes into any directory, but not into a read-only file system
        try:
            with tempfile.TemporaryFile(dir="/sys"):
                pass
        except OSError:
            return Path("/sys") / "azr-out" / "run"
        pytest.skip("running as root with no read-only file system at /sys")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    return ro / "run"


@pytest.mark.parametrize("how", ["file", "read-only"])
def test_train_refuses_an_unwritable_out_before_loading_the_model(tmp_path, capsys, how):
    out = _unwritable(tmp_path, how)
    # the model does not exist: the error must come from --out, checked first
    rc = cli.main(["train", "--preset", "quickstart", "--out", str(out), "--model", str(tmp_path / "no-model"),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("azr train: error: run directory"), err
    assert str(out) in err and ("not a directory" in err or "not writable" in err), err
    assert not out.exists()


@pytest.mark.parametrize("how", ["file", "read-only"])
def test_eval_refuses_an_unwritable_out_before_loading_the_model(tmp_path, capsys, shared_data, how):
    out = _unwritable(tmp_path, how)
    rc = cli.main(["eval", "--model", str(tmp_path / "no-model"), "--tasks", "gsm8k", "--out", str(out),
                   "--data-dir", str(shared_data / "benchmarks"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"azr eval: error: --out {out}"), err


@pytest.mark.parametrize("argv, message", [
    (["--limit", "-1"], "--limit must be >= 0, got -1"),
    (["--temperature", "-1"], "--temperature must be >= 0 (0 = greedy), got -1.0"),
    (["--n", "2", "--pass-k", "1,4"], "--pass-k 4 is larger than --n (2)"),
    (["--pass-k", "one"], "--pass-k must be comma-separated integers"),
    (["--few-shot", "-2"], "--few-shot must be >= 0"),
    (["--top-p", "0"], "--top-p must be in (0, 1]"),
])
def test_eval_argument_errors_name_the_flag_before_loading_the_model(tmp_path, capsys, shared_data, argv,
                                                                      message):
    rc = cli.main(["eval", "--model", str(tmp_path / "no-model"), "--tasks", "gsm8k", "--out", str(tmp_path / "o"),
                   "--data-dir", str(shared_data / "benchmarks"), "--no-progress", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("azr eval: error: " + message), err
    assert not (tmp_path / "o").exists()


def _tiny_model(shared_data):
    d = shared_data / "models" / "tinystories-656k"
    if not (d / "model.safetensors").is_file():
        pytest.skip(f"{d} missing")
    return d


def test_train_refuses_a_prompt_budget_larger_than_the_context(tmp_path, capsys, shared_data):
    """quickstart's budget (1536 prompt + 128 new tokens) on a 512-position model: refused as soon as the
    model's config is known, before the sandbox starts or seeding runs."""
    model = _tiny_model(shared_data)
    out = tmp_path / "run"
    rc = cli.main(["train", "--preset", "quickstart", "--out", str(out), "--model", str(model), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.startswith("azr train: error: the prompt budget does not fit the model: max_prompt_tokens (1536) "
                          "+ max_new_tokens_propose (128) = 1664 tokens"), err
    assert "context of 512 positions" in err and "--set max_prompt_tokens=384" in err, err
    assert not (out / "metrics.jsonl").exists()
    # the suggested value fits
    from azr.config import TrainerConfig
    from azr.trainer import _check_context

    model_cfg = type("M", (), {"config": type("C", (), {"max_position_embeddings": 512})()})()
    _check_context(TrainerConfig.preset("quickstart", max_prompt_tokens=384), model_cfg)
    with pytest.raises(ValueError, match="'max_new_tokens_solve' = 512 leaves no room for a prompt"):
        _check_context(TrainerConfig.preset("quickstart", max_prompt_tokens=0, max_new_tokens_solve=512,
                                            roles=["solve"], seed_rounds=0), model_cfg)


def test_eval_names_a_problem_whose_prompt_exceeds_the_context(tmp_path, capsys, shared_data):
    model = _tiny_model(shared_data)
    rc = cli.main(["eval", "--model", str(model), "--tasks", "math500", "--limit", "2", "--prompt-style", "base",
                   "--few-shot", "8", "--out", str(tmp_path / "o"), "--data-dir", str(shared_data / "benchmarks"),
                   "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("azr eval: error: math500 problem "), err
    assert "the model's context is 512 positions" in err, err


# ------------------------------------------------------------- python -m azr, --version
def _run_module(*argv):
    """`python -m azr ...` in a child process, importing this checkout's azr."""
    import os
    import subprocess
    import sys

    import azr

    root = str(Path(azr.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "azr", *argv], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120)


def test_python_dash_m_azr_is_the_azr_command():
    import azr

    r = _run_module("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"azr {azr.__version__}", (r.stdout, r.stderr)
    r = _run_module("--help")
    assert r.returncode == 0 and "train" in r.stdout and "eval" in r.stdout and "--version" in r.stdout
    r = _run_module("eval", "--model", "m", "--limit", "-1", "--tasks", "gsm8k")  # a delegated command's error
    assert r.returncode == 2 and r.stderr.startswith("azr eval: error: --limit must be >= 0"), r.stderr


def test_version_flag_in_process(capsys):
    import azr

    with pytest.raises(SystemExit) as exc:
        cli.main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.strip() == f"azr {azr.__version__}"


def test_resume_refuses_a_run_directory_it_cannot_write(tmp_path, capsys):
    import os

    if os.geteuid() == 0:
        pytest.skip("root writes into read-only directories (resume)")
    from azr.trainer import cli_main

    out = _fake_run(tmp_path)
    capsys.readouterr()
    out.chmod(0o555)
    try:
        assert cli_main(["train", "--resume", str(out), "--steps", "3"], model_loader=_no_model) == 2
    finally:
        out.chmod(0o755)
    err = capsys.readouterr().err
    assert err.startswith(f"azr train: error: run directory {out} is not writable"), err


@pytest.mark.parametrize("argv, message", [(["--steps", "0"], "--steps must be >= 1, got 0"),
                                           (["--seq-len", "1"], "--seq-len must be >= 2, got 1")])
def test_demo_argument_errors(capsys, argv, message):
    assert cli.main(["demo", *argv]) == 2
    assert capsys.readouterr().err == f"azr demo: error: {message}\n"


def test_importing_an_unbuilt_checkout_explains_itself(tmp_path):
    """From a source checkout without the C extension, `import azr` says what
    happened and what to do, not "partially initialized module (most likely
    due to a circular import)"; the benchmarks prefer the installed package."""
    import os
    import shutil
    import subprocess
    import sys
    import sysconfig

    import azr

    repo = Path(__file__).resolve().parent.parent        # the checkout
    built = Path(azr.__file__).resolve().parent.parent   # where the imported (built) azr lives
    shutil.copytree(repo / "azr", tmp_path / "azr", ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    (tmp_path / "setup.py").write_text("")
    # -S: no .pth files, so an editable install's import hook cannot supply azr._core;
    # site-packages stays reachable through PYTHONPATH for numpy and the BLAS wheel
    paths = sysconfig.get_paths()
    site = os.pathsep.join(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    env = {**os.environ, "PYTHONPATH": site}
    r = subprocess.run([sys.executable, "-S", "-c", "import azr"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert "azr._core) is not built in" in last and "pip install ." in last and "circular" not in last, last
    # a benchmark run from that checkout finds the installed azr first (its own folder is sys.path[0])
    shutil.copytree(repo / "benchmarks", tmp_path / "benchmarks")
    env["PYTHONPATH"] = os.pathsep.join([str(built), site])  # the built package, as if installed
    r = subprocess.run([sys.executable, "-S", str(tmp_path / "benchmarks" / "bench_tokenizer.py"), "--help"],
                       cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0 and "--quick" in r.stdout, r.stderr[-2000:]
