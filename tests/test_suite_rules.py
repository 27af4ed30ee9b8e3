"""The rules that make a green run mean something (tests/conftest.py,
pyproject.toml): under CI a skip fails and missing data stops the run, a hung
test is stopped, Hypothesis draws the same examples every run, and the
reference libraries are pinned to the versions the tests were written against.

The CI rules are checked on throwaway test files run by a child pytest, so
they hold whatever this machine has.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

import hypothesis

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO = Path(__file__).resolve().parent.parent


def _pytest(tmp_path: Path, body: str, *args: str, ci: bool, **env: str) -> subprocess.CompletedProcess:
    """Run a child pytest on one test file beside a copy of our conftest."""
    shutil.copy(REPO / "tests" / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_probe.py").write_text(body)
    full = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    full.setdefault("AZR_SHARED_DATA", str(tmp_path))  # any directory: the probes read nothing
    full.setdefault("AZR_REDTEAM", str(tmp_path))
    full.update(env)
    if ci:
        full["CI"] = "true"
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args,
                           str(tmp_path / "test_probe.py")],
                          cwd=tmp_path, env=full, capture_output=True, text=True, timeout=120)


SKIPPING = """
import pytest

def test_missing_data():
    pytest.skip("real test data not found: set AZR_SHARED_DATA or place it at ../shared/data")

def test_runs():
    assert True
"""


def test_a_skip_fails_the_run_under_ci(tmp_path):
    local = _pytest(tmp_path, SKIPPING, ci=False)
    assert local.returncode == 0 and "1 passed, 1 skipped" in local.stdout, local.stdout + local.stderr
    ci = _pytest(tmp_path, SKIPPING, ci=True)
    assert ci.returncode == 1, ci.stdout + ci.stderr
    assert "1 failed, 1 passed" in ci.stdout and "skipped under CI" in ci.stdout, ci.stdout


def test_a_missing_declared_dependency_fails_collection_under_ci(tmp_path):
    body = "import pytest\nnot_there = pytest.importorskip('azr_no_such_module')\n\ndef test_x():\n    pass\n"
    local = _pytest(tmp_path, body, ci=False)
    assert local.returncode == 5 and "1 skipped" in local.stdout, local.stdout + local.stderr  # 5: none ran
    ci = _pytest(tmp_path, body, ci=True)
    assert ci.returncode != 0 and "skipped under CI" in ci.stdout and "azr_no_such_module" in ci.stdout, \
        ci.stdout + ci.stderr


def test_ci_refuses_to_start_without_shared_data_or_redteam(tmp_path):
    body = "def test_x():\n    pass\n"
    for var in ("AZR_SHARED_DATA", "AZR_REDTEAM"):
        r = _pytest(tmp_path, body, ci=True, **{var: str(tmp_path / "absent")})
        assert r.returncode == 4, (var, r.stdout, r.stderr)  # a usage error: nothing ran
        assert var in r.stderr, r.stderr
        assert _pytest(tmp_path, body, ci=False, **{var: str(tmp_path / "absent")}).returncode == 0


def test_a_hung_test_is_stopped(tmp_path):
    """The project's timeout settings (pyproject.toml), with the limit cut to 2 s."""
    body = "import time\n\ndef test_hangs():\n    time.sleep(300)\n"
    t0 = time.monotonic()
    r = _pytest(tmp_path, body, "-c", str(REPO / "pyproject.toml"), "-o", "timeout=2", ci=False)
    assert time.monotonic() - t0 < 60
    assert r.returncode != 0 and "Timeout" in r.stdout + r.stderr, r.stdout + r.stderr


def test_timeout_is_configured():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 60 <= int(cfg["timeout"]) <= 1800 and cfg["timeout_method"] == "thread"


def test_hypothesis_is_derandomized(request):
    assert hypothesis.settings.default.derandomize
    for item in request.session.items:
        fn = getattr(item, "obj", None)
        if getattr(fn, "is_hypothesis_test", False):
            assert fn._hypothesis_internal_use_settings.derandomize, item.nodeid


def test_reference_libraries_are_pinned_to_the_installed_versions():
    """The reference tests compare against these libraries' numbers and
    token ids: a new release must be a deliberate change of the pin."""
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    pins = dict(m.groups() for m in (re.fullmatch(r"([A-Za-z0-9_.-]+)==(\S+)", r.strip()) for r in extra) if m)
    for name in ("torch", "tokenizers", "transformers", "gguf", "accelerate", "pytest-timeout"):
        assert name in pins, f"{name} is not pinned (==) in the test extra"
        installed = metadata.version(name).split("+")[0]  # == 2.13.0 accepts the local build 2.13.0+cpu
        assert installed == pins[name], (name, installed, pins[name])
