"""Shared pytest fixtures and the rules that keep a green run meaningful.

`shared_data` finds the project's real test files (tokenizers, models,
benchmarks): `$AZR_SHARED_DATA` if set, else `../shared/data` next to the
repository; `redteam_dir` finds the sandbox's red-team corpus the same way
(`$AZR_REDTEAM`, else `../shared/redteam`). On a developer's machine a test
that needs one of them skips with a clear reason when it is absent.

Under CI (the environment variable `CI` set, as `.ci/run` does) nothing may
vanish quietly:
- the run refuses to start without ../shared/data, ../shared/redteam or the
  pytest-timeout plugin (declared in the `test` extra);
- every skip is a failure unless its reason is in `SKIPS_ALLOWED_IN_CI`, so a
  missing declared dependency (`pytest.importorskip`), a missing data file, a
  missing default model or a missing sandbox layer fails the run instead of
  shrinking it.

Every Hypothesis test is derandomized (the `azr` profile, loaded always): the
same examples every run, so a run cannot flake on a new draw.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

REPO = Path(__file__).resolve().parent.parent

hypothesis_settings.register_profile("azr", derandomize=True, database=None)
hypothesis_settings.load_profile("azr")

# Skip reasons that are not a missing dependency, data set or layer. Add a
# reason here only with a comment saying why CI may skip it.
SKIPS_ALLOWED_IN_CI: tuple[str, ...] = (
    # test_cli's unwritable *resume* directory needs a user that permissions
    # stop; CI runs as root. The check it reaches (config.check_writable_dir)
    # runs as root too in the unwritable --out tests, on read-only /sys.
    "root writes into read-only directories (resume)",
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def shared_data_dir() -> Path | None:
    env = os.environ.get("AZR_SHARED_DATA")
    cand = Path(env) if env else REPO.parent / "shared" / "data"
    return cand if cand.is_dir() else None


def redteam_path() -> Path | None:
    env = os.environ.get("AZR_REDTEAM")
    cand = Path(env) if env else REPO.parent / "shared" / "redteam"
    return cand if cand.is_dir() else None


def pytest_configure(config):
    if not in_ci():
        return
    missing = []
    if shared_data_dir() is None:
        missing.append("the real test data (set AZR_SHARED_DATA or place it at ../shared/data)")
    if redteam_path() is None:
        missing.append("the red-team corpus (set AZR_REDTEAM or place it at ../shared/redteam)")
    if not config.pluginmanager.hasplugin("timeout"):
        missing.append("the pytest-timeout plugin (pip install '.[test]')")
    if missing:
        raise pytest.UsageError("CI is set, so the run needs " + "; ".join(missing))


def _skip_reason(report) -> str:
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return str(lr[2])
    return str(lr)


def _fail_skip_in_ci(report) -> None:
    if not (in_ci() and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if any(allowed in reason for allowed in SKIPS_ALLOWED_IN_CI):
        return
    report.outcome = "failed"
    report.longrepr = (f"skipped under CI, where every test must run (tests/conftest.py): {reason}\n"
                       "install the declared test dependencies (pip install '.[test]'), provide "
                       "../shared/data and ../shared/redteam, or fix the missing layer")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.fixture(scope="session")
def shared_data() -> Path:
    d = shared_data_dir()
    if d is None:
        pytest.skip("real test data not found: set AZR_SHARED_DATA or place it at ../shared/data")
    return d


@pytest.fixture(scope="session")
def redteam_dir() -> Path:
    d = redteam_path()
    if d is None:
        pytest.skip("red-team corpus not found: set AZR_REDTEAM or place it at ../shared/redteam")
    return d
