"""Tests of azr.Executor: the sandbox's behaviour on the hostile-program
corpus (checked against the host: files, processes, the parent alive), the
determinism check, the deny-list, type-aware judging, crash recovery, and
leaks. Timeouts are short (0.5-1 s) to keep the suite fast."""
from __future__ import annotations

import ctypes
import json
import os
import sys
import signal
import threading
import time
from pathlib import Path

import pytest

from azr.executor import DEFAULT_DENY, DenyList, Executor, canonical_repr, values_equal
from zygote_helpers import load_zygote_module

RUN_UID = 61000


def _children_of(pid: int) -> list[int]:
    kids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as fh:
                stat = fh.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == pid:
                kids.append(int(d))
        except (OSError, ValueError):
            pass
    return kids


def _landlock_abi() -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint(1))
    return max(0, r)


@pytest.fixture(scope="module")
def ex():
    e = Executor(workers=2, timeout=1.0, memory_mb=256)
    yield e
    e.close()


# ------------------------------------------------------------------ basics

def test_run_values_and_canonical_output(ex):
    progs = ["def f(x):\n    return x * 2",
             "def f(a, b=3):\n    return (a, b, [a], {a: b}, {a}, -0.0, 1.5, None, True, 'é', b'\\x00')",
             "def f(x):\n    return 2 ** 100",
             "def f(x):\n    return frozenset({x})",
             "def f(**kw):\n    return sorted(kw.items())"]
    inputs = ["21", "1, b=2", "0", "'a'", "p=1, q=2"]
    r = ex.run(progs, inputs)
    assert [x.status for x in r] == ["ok"] * 5, [x.message for x in r]
    assert r[0].value == 42 and type(r[0].value) is int and r[0].output == "42"
    v = r[1].value
    assert v[:4] == (1, 2, [1], {1: 2}) and v[4] == {1}
    assert str(v[5]) == "-0.0" and v[6:] == (1.5, None, True, "é", b"\x00")
    assert r[2].value == 2 ** 100 and r[2].output == str(2 ** 100)
    assert r[3].value == frozenset({"a"}) and r[3].output == "frozenset({'a'})"
    assert r[4].value == [("p", 1), ("q", 2)]
    assert all(x.wall_time > 0 for x in r)


def test_inputs_are_literals_only(ex):
    prog = "def f(x):\n    return x"
    r = ex.run([prog] * 5, ["dict(a=1, b=2)", "[-1 * (10 ** 9), 10 ** 9]", "__import__('os')",
                            "(lambda: 1)()", "f.__code__"])
    assert r[0].status == "ok" and r[0].value == {"a": 1, "b": 2}
    assert r[1].status == "ok" and r[1].value == [-10 ** 9, 10 ** 9]
    for x in r[2:]:
        assert x.status == "error" and "bad input" in x.message


def test_errors_and_syntax(ex):
    r = ex.run(["def f(x):\n    return 1 / x", "def f(x)\n    return x", "x = 1", "def f():\n    print('hi')\n    return 1"],
               ["0", "1", "1", ""])
    assert r[0].status == "error" and "ZeroDivisionError" in r[0].message and "line 2" in r[0].message
    assert r[1].status == "syntax"
    assert r[2].status == "error" and "does not define a function f" in r[2].message
    assert r[3].status == "ok" and r[3].stdout == "hi\n"


def test_isolation_layers_reported(ex):
    iso = ex.isolation
    for k in ("process_group", "rlimits", "no_new_privs", "wall_clock_deadline", "seccomp",
              "empty_environment", "parent_death_signal"):
        assert iso[k], k
    assert iso["landlock"] == (_landlock_abi() >= 1)
    if os.geteuid() == 0:
        assert iso["unprivileged_uid"] and iso["pid_namespace"] and iso["network_namespace"]
    assert iso["pid_namespace"] or iso["subreaper"]


def test_isolation_layers_ci_expects(ex):
    """The layers the machine must give, named in AZR_EXPECT_ISOLATION
    (comma-separated; .ci/run sets it): several checks here hold only when a
    layer is active, so a missing layer must fail here, not skip them."""
    want = [n.strip() for n in os.environ.get("AZR_EXPECT_ISOLATION", "").split(",") if n.strip()]
    if not want:
        pytest.skip("AZR_EXPECT_ISOLATION is not set: no isolation layer is required on this machine")
    iso = ex.isolation
    unknown = sorted(set(want) - set(iso))
    assert not unknown, f"AZR_EXPECT_ISOLATION names unknown layers {unknown}; the layers are {sorted(iso)}"
    missing = [n for n in want if not iso[n]]
    assert not missing, f"expected isolation layers are not active: {missing}"


def test_children_see_empty_environment_and_own_uid(ex, monkeypatch):
    prog = ("import os\ndef f(x):\n"
            "    return (sorted(k for k in os.environ), os.getuid(), os.getpid() == os.getpgid(0))")
    r = ex.run([prog], ["0"])[0]
    assert r.status == "ok", r.message
    env, uid, leader = r.value
    assert env == [] and leader
    if ex.isolation["unprivileged_uid"]:
        assert RUN_UID <= uid < RUN_UID + ex.workers
    r = ex.run(["def f(x):\n    return open('/proc/self/environ', 'rb').read()"], ["0"])[0]
    assert r.status in ("denied", "ok")
    if r.status == "ok":
        assert b"PATH" not in r.value and b"HOME" not in r.value


def test_host_paths_do_not_exist_for_runs(tmp_path):
    """With the minimal root a run cannot even stat a host file (its size, its
    time): the path is not there; reaching for it is denied."""
    secret = tmp_path / "host_file.bin"
    secret.write_bytes(b"x" * 12345)
    with Executor(workers=2, timeout=5.0) as e:
        if not e.isolation["minimal_root"]:
            pytest.skip("no minimal root here (needs root and a mount namespace)")
        prog = ("import os\ndef f(p):\n"
                "    out = []\n"
                "    for q in (p, os.path.dirname(p), '/etc/passwd', '/home'):\n"
                "        out.append(os.path.exists(q))\n"
                "    return out\n")
        r = e.run([prog], [repr(str(secret))])[0]
        assert r.status == "ok", r.message
        assert r.value == [False, False, False, False]
        for prog in ("import os\ndef f(p):\n    return os.stat(p).st_size",
                     "def f(p):\n    return open(p).read()",
                     "import os\ndef f(p):\n    os.symlink(p, 'l')\n    return open('l').read()"):
            r = e.run([prog], [repr(str(secret))])[0]
            assert r.status == "denied" and "12345" not in r.message, (prog, r.status, r.message)
        # a missing file inside the run's own directory stays an ordinary error
        r = e.run(["def f(x):\n    return open('nope.txt').read()"], ["0"])[0]
        assert r.status == "error" and "FileNotFoundError" in r.message


def test_each_zygote_runs_as_a_uid_of_its_own():
    """The per-uid process limit counts each zygote's runs apart: runs in
    different zygotes of a pool have different uids (slot i: RUN_UID + i)."""
    with Executor(workers=3, timeout=5.0) as e:
        if not e.isolation["unprivileged_uid"]:
            pytest.skip("runs keep the caller's uid here (not root)")
        prog = "import os, time\ndef f(x):\n    time.sleep(0.2)\n    return os.getuid()"
        rs = e.run([prog] * 6, ["0"] * 6)  # three at a time: every zygote takes some
        assert all(r.status == "ok" for r in rs), [r.message for r in rs]
        uids = {r.value for r in rs}
        assert uids == {RUN_UID, RUN_UID + 1, RUN_UID + 2}, uids


# ------------------------------------------------------------------ red team

def _load_corpus(redteam_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (redteam_dir / "public.jsonl").read_text().splitlines() if line.strip()]


def test_redteam_corpus(redteam_dir):
    cases = _load_corpus(redteam_dir)
    watched = ["/tmp/pwned", "/tmp/pwned_parent", "/tmp/pwned2"]
    before = {p: os.path.exists(p) for p in watched}
    with Executor(workers=2, timeout=1.0, memory_mb=256) as e:
        spawned = e._spawned()
        rotations = 0  # each validate call replaces one zygote on purpose (fresh hash seed)
        slow = [c for c in cases if c["expect"] == "timeout"]
        fast = [c for c in cases if c["expect"] != "timeout"]
        res = {}
        for group, tmo in ((slow, 0.5), (fast, 5.0)):
            out = e.run([c["program"] for c in group], [c["input"] for c in group], timeout=tmo)
            res.update({c["id"]: r for c, r in zip(group, out)})
        vcases = [c for c in cases if c["expect"] in ("ok", "nondeterministic")]
        val = e.validate([c["program"] for c in vcases], [c["input"] for c in vcases], timeout=5.0,
                         deny=DenyList())
        rotations += 1
        val = {c["id"]: v for c, v in zip(vcases, val)}
        # The k runs of a nondeterministic case can agree by chance (addresses
        # modulo 1000, hashes modulo 100); a real miss would repeat, so such a
        # case gets one retry, on a fresh executor: this one's zygotes keep
        # their heap layouts and all but one keep their hash seeds, so a
        # retry here could repeat the same collision.
        retry = [c for c in vcases if c["expect"] == "nondeterministic" and val[c["id"]].status == "ok"]
        if retry:
            with Executor(workers=2, timeout=1.0, memory_mb=256) as fresh:
                again = fresh.validate([c["program"] for c in retry], [c["input"] for c in retry], timeout=5.0,
                                       deny=DenyList())
            val.update({c["id"]: v for c, v in zip(retry, again)})
        # Later runs see none of the earlier runs' state changes.
        probe = ("import math, sys, decimal, os, gc, random\n"
                 "def f(x):\n"
                 "    return (math.pi, math.sqrt(16), sys.getrecursionlimit(), sys.get_int_max_str_digits(),\n"
                 "            decimal.getcontext().prec, os.getcwd() != '/', gc.isenabled(), len(gc.callbacks),\n"
                 "            os.path.exists('leak.txt'), 1 + 1, random.random())\n")
        p1, p2 = e.run([probe, probe], ["0", "0"])
        assert p1.status == "ok" and p2.status == "ok", (p1.message, p2.message)
        assert p1.value[:10] == (3.141592653589793, 4.0, 1000, 4300, 28, True, True, 0, False, 2)
        assert p1.value[10] != p2.value[10], "children of a zygote share one random stream"
        # The pool survived everything and still has its zygotes.
        assert e.run(["def f(x):\n    return x"], ["7"])[0].value == 7
        assert e._spawned() == spawned + rotations, "a zygote was lost (crashed) during the corpus"
        zygotes = set(e._worker_pids())
        time.sleep(0.2)
        left = {z: _children_of(z) for z in zygotes}
        assert all(not v for v in left.values()), f"a sandboxed run outlived its deadline: {left}"
    failures = []
    for c in cases:
        got = val[c["id"]].status if c["expect"] == "nondeterministic" else res[c["id"]].status
        ok = got == c["expect"] or (c["expect"] == "memory" and got == "timeout")
        # A 1.0 s budget is short for a C-stack overflow on a loaded machine.
        ok = ok or (c["expect"] == "error" and c["category"] == "recursion" and got == "timeout")
        if not ok:
            failures.append((c["id"], c["expect"], got, res[c["id"]].message))
        # Deterministic programs are not flagged by the determinism check.
        if c["expect"] in ("ok",) and c["category"] != "nondeterminism":
            assert val[c["id"]].status == "ok", (c["id"], val[c["id"]].message)
    assert not failures, failures
    # Host effects that must never happen.
    for p in watched:
        assert os.path.exists(p) == before[p], f"{p} was created on the host"
    assert res["rt071-obfuscation"].value is None
    assert res["rt084-output"].value == 0
    assert res["rt092-result"].value == 5 and type(res["rt092-result"].value) is int
    assert res["rt047-files"].value == "hello"
    assert all(not x.startswith("/root/") or x == "/root/" for x in res["rt049-files"].value)
    assert "root:" not in res["rt043-files"].message
    assert res["rt099-result"].value == {"apple", "banana", "cherry", "date"}
    assert val["rt099-result"].status == "ok"
    assert not [p for p in zygotes if os.path.exists(f"/proc/{p}")], "a zygote outlived Executor.close()"


def test_escaped_strings_still_refused_by_os_layers(ex, tmp_path):
    """Names built at run time pass no syntax check; seccomp/Landlock refuse."""
    target = "/tmp/pwned_escape_%d" % os.getpid()
    progs = [
        "def f(x):\n    return getattr(__import__('o' + 's'), 'sys' + 'tem')(x)",
        "def f(x):\n    m = __builtins__['__imp' + 'ort__'] if isinstance(__builtins__, dict) else getattr(__builtins__, '__imp' + 'ort__')\n"
        "    return m('sub' + 'process').run(['touch', '/tmp/x'])",
        "def f(x):\n    return getattr(__builtins__, 'op' + 'en')(x, 'w').write('x')",
        "def f(x):\n    return getattr(__import__('soc' + 'ket'), 'socket')().connect(('127.0.0.1', 22))",
        "def f(x):\n    import os\n    return os.kill(1, 9)",
        "def f(x):\n    import os\n    return os.listdir('/root')",
        "import ctypes\ndef f(x):\n    return ctypes.CDLL(None).shmget(0, 1 << 20, 0o1600)",
        "import ctypes, os\ndef f(x):\n    return ctypes.CDLL(None).syscall(x, 0x40000000)",  # unshare(CLONE_NEWNET)
    ]
    unshare_nr = {"x86_64": 272, "aarch64": 97}.get(os.uname().machine, 272)
    inputs = [repr("touch " + target), "0", repr(target), "0", "0", "0", "0", str(unshare_nr)]
    r = ex.run(progs, inputs)
    assert [x.status for x in r] == ["denied"] * 8, [(x.status, x.message) for x in r]
    assert not os.path.exists(target)


# ------------------------------------------------------------------ determinism & deny-list

NONDET = {
    "hash": "def f(x):\n    return hash(x) % 1000003",
    "id": "def f(x):\n    return id(x)",
    "set_order": "def f(x):\n    return list({str(i) * 3 for i in range(x)})",
    "random": "import random\ndef f(x):\n    return random.random()",
    "time": "import time\ndef f(x):\n    return time.time()",
    # a sub-millisecond clock: the modulus is wide enough that two runs
    # coincide by chance about once in a million validations, not once in 1000
    "time_ns": "import time\ndef f(x):\n    return time.perf_counter_ns() % 1000003",
    "object_repr": "def f(x):\n    return repr(object())",
}


def test_wall_clock_dependence_is_caught_every_time(ex):
    """The two runs of a validation run at the same moment; without the
    per-zygote wall-clock offset they sometimes read the same time.time()."""
    prog = NONDET["time"]
    r = ex.validate([prog] * 40, ["0"] * 40, deny=DenyList())
    assert [x.status for x in r] == ["nondeterministic"] * 40, [(x.status, x.message) for x in r]
    # the offset is a whole number of units of a year and a bit (one per pool slot)
    out = ex.run([prog], ["0"])[0]
    unit = 367 * 86400 + 3661.123456789
    assert out.status == "ok", out.message
    assert unit - 5 < out.value - time.time() < unit * (ex.workers * 2 + 1), out.value - time.time()


# Routes to the real-time clock other than time.time: each must see a
# different time in each run of a validation. Without the shifts they read
# the same second in both runs nearly every time.
WALL_CLOCK_ROUTES = {
    "datetime.now": "import datetime\ndef f(x):\n    return datetime.datetime.now().second",
    "date.today": "import datetime\ndef f(x):\n    return datetime.date.today().year",
    "utcnow": "import datetime\ndef f(x):\n    return datetime.datetime.utcnow().strftime('%Y %S')",
    "localtime": "import time\ndef f(x):\n    return time.localtime().tm_sec",
    "strftime": "import time\ndef f(x):\n    return time.strftime('%Y-%m-%d %H:%M:%S')",
    "ctime": "import time\ndef f(x):\n    return time.ctime()",
    "CLOCK_REALTIME": "import time\ndef f(x):\n    return int(time.clock_gettime(time.CLOCK_REALTIME)) % 60",
    "realtime_ns": "import time\ndef f(x):\n    return time.clock_gettime_ns(0) // 10**9 % 60",
    "email": "import email.utils\ndef f(x):\n    return email.utils.localtime().second",
    "file_mtime": "import os\ndef f(x):\n    open('t.txt', 'w').close()\n    return int(os.path.getmtime('t.txt')) % 60",
    "file_scandir": ("import os\ndef f(x):\n    open('u.txt', 'w').close()\n"
                     "    return [int(e.stat().st_ctime) % 60 for e in os.scandir('.')]"),
    "file_fstat": ("import os\ndef f(x):\n    fd = os.open('v.txt', os.O_CREAT | os.O_WRONLY)\n"
                   "    return int(os.fstat(fd).st_mtime) % 60"),
}


def test_every_wall_clock_route_is_caught(ex):
    names = list(WALL_CLOCK_ROUTES)
    for _ in range(3):
        r = ex.validate([WALL_CLOCK_ROUTES[k] for k in names], ["0"] * len(names), deny=DenyList())
        got = {k: (x.status, x.message) for k, x in zip(names, r)}
        assert all(st == "nondeterministic" for st, _ in got.values()), got
    # email.utils is not on the default deny-list: the default configuration catches it too
    r = ex.validate([WALL_CLOCK_ROUTES["email"]] * 4, ["0"] * 4)
    assert [x.status for x in r] == ["nondeterministic"] * 4, [(x.status, x.message) for x in r]


def test_shifted_clocks_agree_within_a_run(ex):
    """One run sees one consistent time: the wrapped clocks, datetime and
    the times of a file it writes agree; copying keeps a file's times."""
    prog = ("import os, time, datetime, shutil\n"
            "def f(x):\n"
            "    open('w.txt', 'w').close()\n"
            "    shutil.copy2('w.txt', 'c.txt')\n"
            "    t = time.time()\n"
            "    return (t, datetime.datetime.now().timestamp(), os.stat('w.txt').st_mtime,\n"
            "            os.stat('c.txt').st_mtime, time.mktime(time.localtime()), time.clock_gettime(0),\n"
            "            time.time_ns() / 1e9)")
    for r in ex.run([prog] * 6, ["0"] * 6):
        assert r.status == "ok", r.message
        t = r.value[0]
        assert all(abs(v - t) < 2.0 for v in r.value), r.value
        assert abs(r.value[3] - r.value[2]) < 1e-3, r.value


def test_small_set_order_dependence_is_caught(ex):
    """A result that depends on the iteration order of a 2- or 3-element set
    of strings: with two hash seeds it passed about half (2 elements) and a
    sixth (3 elements) of the time. With k = 4 seeds per validation the
    expected misses here are 160 / 8 = 20 and 160 / 216 < 1 (docs: validate);
    the bounds sit more than 5 standard deviations from both."""
    prog = "def f(x):\n    return '-'.join(set(x))"
    pairs = [repr([f"a{i}", f"b{i}"]) for i in range(160)]
    triples = [repr([f"p{i}", f"q{i}", f"r{i}"]) for i in range(160)]
    r2 = ex.validate([prog] * 160, pairs)
    r3 = ex.validate([prog] * 160, triples)
    assert all(x.status in ("ok", "nondeterministic") for x in r2 + r3)
    missed2 = sum(x.status == "ok" for x in r2)
    missed3 = sum(x.status == "ok" for x in r3)
    assert missed2 <= 50, missed2    # two seeds: about 80; four: about 20
    assert missed3 <= 8, missed3     # two seeds: about 27; four: under 1
    # order-free results of the same sets stay valid
    ok = ex.validate(["def f(x):\n    return sorted(set(x))"] * 4, pairs[:4])
    assert [x.status for x in ok] == ["ok"] * 4


def test_validation_groups_get_distinct_seeds_and_seeds_rotate():
    with Executor(workers=2, timeout=2.0, determinism_runs=4) as e:
        assert e.workers == 4
        pool = e._live()
        req = e._req(0, b"def f(x):\n    return x", b"1")
        group = [req[:6] + (0,) + req[7:]] * 4          # four runs led by request 0
        seeds = [r[10] for r in pool.run(group)]
        assert len(set(seeds)) == 4, seeds
        with pytest.raises(ValueError, match="group"):  # more runs than zygotes with distinct seeds
            pool.run([req[:6] + (0,) + req[7:]] * 5)
        with pytest.raises(ValueError, match="does not name itself"):
            pool.run([req, req[:6] + (0,) + req[7:]])
        before = {r[10] for r in pool.run([req] * 8)}
        spawned = e._spawned()
        e.validate(["def f(x):\n    return x"], ["1"])
        after = {r[10] for r in pool.run([req] * 16)}
        assert e._spawned() == spawned + 1 and len(after - before) >= 1
    with pytest.raises(ValueError, match="determinism_runs"):
        Executor(determinism_runs=1)


def _typing_has_fallback() -> bool:
    """typing.py imports its C helper with a pure-Python fallback (3.11)."""
    import typing
    src = open(typing.__file__).read()
    at = src.find("from _typing import")
    return at >= 0 and "except ImportError" in src[at:at + 200]


def test_zygote_maps_few_libraries_yet_programs_get_accelerated_modules(ex):
    """Each shared library in the zygote costs every fork and exit five
    mappings: json's C accelerator and the rarely imported heapq/bisect/
    random are not preloaded, but a program importing them gets the usual
    C-accelerated modules."""
    for pid in ex._worker_pids():
        maps = open(f"/proc/{pid}/maps").read()
        for lib in ("_json", "_heapq", "_bisect", "_random", "_sha512", "_typing")[:5 + _typing_has_fallback()]:
            assert f"/{lib}." not in maps, f"{lib} is mapped in zygote {pid}"
    prog = ("import json, heapq, bisect, random\n"
            "def f(x):\n"
            "    from typing import List, NewType\n"
            "    UserId = NewType('UserId', int)\n"
            "    return (json.decoder.c_scanstring is not None, json.loads('[1, 2]'),\n"
            "            heapq.heappush.__module__, bisect.bisect.__module__, type(random.random()).__name__,\n"
            "            UserId(5), str(List[int]))")
    r = ex.run([prog], ["0"])[0]
    assert r.status == "ok", r.message
    assert r.value == (True, [1, 2], "_heapq", "_bisect", "float", 5, "typing.List[int]")


def test_importing_the_zygote_driver_leaves_json_alone():
    """Only a zygote (the driver run as a script) trades json's C accelerator
    away; a process importing the driver as a module keeps its json."""
    import json
    import azr._sandbox_zygote  # noqa: F401
    assert sys.modules["json"] is json and sys.modules.get("_json") is not None


def test_determinism_check_catches_each_source(ex):
    names = list(NONDET)
    inputs = {"hash": "'abc'", "id": "[1, 2]", "set_order": "30"}
    r = ex.validate([NONDET[k] for k in names], [inputs.get(k, "0") for k in names], deny=DenyList())
    got = {k: x.status for k, x in zip(names, r)}
    assert got == {k: "nondeterministic" for k in names}, {k: (x.status, x.message) for k, x in zip(names, r)}


def test_time_namespace_shifts_monotonic_clock_per_zygote(ex):
    prog = "import time\ndef f(x):\n    return int(time.monotonic()) // 10"
    r = ex.validate([prog], ["0"], deny=DenyList())[0]
    if ex.isolation["time_namespace"]:
        assert r.status == "nondeterministic", r
    else:
        assert r.status in ("ok", "nondeterministic")


def test_determinism_check_passes_deterministic_programs(ex):
    progs = ["def f(x):\n    return sorted({s for s in x})",
             "def f(x):\n    return {s for s in x}",
             "def f(x):\n    return {k: len(k) for k in x}",
             "import math\ndef f(x):\n    return math.factorial(x)"]
    inputs = ["['b', 'a', 'c']", "['apple', 'banana', 'cherry', 'date']", "['aa', 'b']", "20"]
    r = ex.validate(progs, inputs)
    assert [x.status for x in r] == ["ok"] * 4, [x.message for x in r]
    assert r[0].output == "['a', 'b', 'c']"
    assert r[1].output == "{'apple', 'banana', 'cherry', 'date'}"
    assert r[3].value == 2432902008176640000


DENIED = [
    "def f(x):\n    return __import__('o' + 's').system(x)",
    "import importlib\ndef f(x):\n    return importlib.import_module(x[::-1])",
    "def f(x):\n    return getattr(__builtins__, 'ev' + 'al')(x)",
    "def f(x):\n    return ().__class__.__base__.__subclasses__()",
    "def f(x):\n    return object.__subclasses__()",
    "def f(x):\n    return f.__globals__",
    "def f(x):\n    name = 'sys' + 'tem'\n    return getattr(x, name)",
    "from os import system\ndef f(x):\n    return system(x)",
    "import os.path\ndef f(x):\n    return os.path.exists(x)",
    "import sys\ndef f(x):\n    return sys.modules['os']",
    "def f(x):\n    return eval(x)",
    "def f(x):\n    return open(x).read()",
    "def f(x):\n    return type.__dict__['__subclasses__'](object)",
    "def f(x):\n    import sys\n    return sys._getframe(1).f_locals",
    "def f(x):\n    return (lambda: 0).__code__",
    "from . import thing\ndef f(x):\n    return x",
    "import random\ndef f(x):\n    return random.random()",
]


def test_deny_list_catches_obfuscated_imports_and_dunders(ex):
    r = ex.validate(DENIED, ["'x'"] * len(DENIED))
    bad = [(p, x.status, x.message) for p, x in zip(DENIED, r) if x.status != "denied"]
    assert not bad, bad
    # The same programs are not refused by run() (no deny-list there).
    ok = ex.validate(["def f(x):\n    return getattr(x, 'upper')()", "import math\ndef f(x):\n    return math.floor(x)"],
                     ["'ab'", "2.5"])
    assert [x.status for x in ok] == ["ok", "ok"] and ok[0].value == "AB" and ok[1].value == 2


def test_deny_list_is_configurable(ex):
    prog = "import random\nrandom.seed(1)\ndef f(x):\n    return x"
    assert ex.validate([prog], ["1"])[0].status == "denied"
    custom = DenyList(modules=DEFAULT_DENY.modules - {"random"}, names=DEFAULT_DENY.names,
                      attributes=DEFAULT_DENY.attributes)
    r = ex.validate([prog], ["1"], deny=custom)[0]
    assert r.status == "ok" and r.value == 1


def test_validate_statuses(ex):
    progs = ["def f(x)\n  return", "def f(x):\n    while True:\n        pass", "def f(x):\n    return 'a' * x",
             "def f(x):\n    return 1 / 0", "def f(x):\n    return 'x' * 20000"]
    r = ex.validate(progs, ["1", "1", "10 ** 10", "1", "0"], timeout=0.5, max_output_chars=10_000)
    assert [x.status for x in r] == ["syntax", "timeout", "memory", "error", "truncated"], [x.message for x in r]


# ------------------------------------------------------------------ judging

EQ_TABLE = [
    (True, 1, False), (1, 1.0, False), (True, 1.0, False), (0.0, -0.0, False), (float("nan"), float("nan"), True),
    ([1, 2], (1, 2), False), ([1, [2]], [1, [2]], True), ({"a": {1, 2}}, {"a": {2, 1}}, True),
    ({1: "a"}, {True: "a"}, False), ({1, 2}, frozenset({1, 2}), False), ({"x": [1.0]}, {"x": [1]}, False),
    ({(1, 2): {3: (4,)}}, {(1, 2): {3: (4,)}}, True), ("1", 1, False), (b"a", "a", False), (None, 0, False),
    (1 + 2j, 1 + 2j, True), (Ellipsis, Ellipsis, True), (Ellipsis, None, False), (complex(0.0, -0.0), complex(0.0, 0.0), False), ({1: 2, 3: 4}, {3: 4, 1: 2}, True),
    ([float("nan")], [float("nan")], True), ({"a": 1}, {"a": 1, "b": 2}, False),
]


@pytest.mark.parametrize("a,b,equal", EQ_TABLE)
def test_type_aware_equality_table(a, b, equal):
    assert values_equal(a, b) is equal
    assert values_equal(b, a) is equal


def test_judge_output_type_aware_end_to_end(ex):
    prog = "def f(x):\n    return x"
    golds = ["True", "1", "0.0", "nan", "[1, 2]", "{'a': {1, 2}}", "frozenset({1})", "dict(a=1)", "-0.0"]
    answers = ["1", "1.0", "-0.0", "float('nan')", "(1, 2)", "{'a': {2, 1}}", "frozenset({1})", "{'a': 1}", "-0.0"]
    want = [False, False, False, True, False, True, True, True, True]
    v = ex.judge_output([prog] * len(golds), ["0"] * len(golds), golds, answers)
    assert [x.correct for x in v] == want, [x.message for x in v]
    # Unparseable or hostile answers are wrong, never a crash or code execution.
    marker = f"/tmp/azr_judge_pwned_{os.getpid()}"
    assert not os.path.exists(marker)
    v = ex.judge_output([prog] * 5, ["0"] * 5, ["1", "1", "1", "8", "{1: 2}"],
                        [f"__import__('os').system('touch {marker}')", "[" * 5000 + "]" * 5000, "1 +",
                         "3 + 5", "{1: len('ab')}"])
    assert [x.correct for x in v] == [False, False, False, False, False], [x.message for x in v]
    assert v[0].status == "error" and "Call is not allowed" in v[0].message, v[0]
    assert not os.path.exists(marker), "a hostile answer ran as code on the host"
    # A None gold is computed by running the program.
    v = ex.judge_output(["def f(x):\n    return x + 1"], ["1"], [None], ["2"])
    assert v[0].correct


def test_judge_input_and_program(ex):
    prog = "def f(a, b):\n    return a * b"
    v = ex.judge_input([prog, prog, prog, prog], ["6", "6", "6.0", "6"], ["2, 3", "3, 2", "2, 3", "'a', 6"])
    assert [x.correct for x in v] == [True, True, False, False]
    cand = ["def f(x):\n    return x * x", "def f(x):\n    return x + x", "def f(x):\n    while True: pass"]
    pairs = [("2", "4"), ("3", "9"), ("0", "0")]
    v = ex.judge_program(cand, [pairs] * 3)
    assert [x.correct for x in v] == [True, False, False]
    assert v[2].status == "timeout"


def test_run_tests_humaneval_and_mbpp_style(ex):
    prog = "def add(a, b):\n    return a + b"
    he_test = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(-1, 1) == 0"
    bad_prog = "def add(a, b):\n    return a - b"
    mbpp = "assert add(2, 2) == 4"
    r = ex.run_tests([prog, bad_prog, prog, prog], [he_test, he_test, mbpp, "while True: pass"],
                     entry_points=["add", "add", None, None], timeout=0.5)
    assert [x.status for x in r] == ["ok", "error", "ok", "timeout"], [x.message for x in r]
    assert "AssertionError" in r[1].message


def test_run_tests_value_is_what_check_returned(ex):
    """check(<entry point>)'s return value comes back as the result's value,
    for verdicts decided outside the program's process (azr.evaluation)."""
    outs = "def check(candidate):\n    return [candidate(i) for i in range(3)]\n"
    big = "def check(candidate):\n    return 'x' * 300000\n"
    prog = "def g(x):\n    return x * 2"
    r = ex.run_tests([prog, prog, prog], [outs, big, big], entry_points=["g"] * 3)
    assert [x.status for x in r] == ["ok", "truncated", "truncated"], [x.message for x in r]
    assert r[0].value == [0, 2, 4]
    r = ex.run_tests([prog], [big], entry_points=["g"], result_limit=1 << 20)[0]
    assert r.status == "ok" and r.value == "x" * 300000
    with pytest.raises(ValueError, match="result_limit"):
        ex.run_tests([prog], [big], result_limit=10)


# ------------------------------------------------------------------ the codec

def test_codec_roundtrip_and_normalisation():
    from azr import _native

    z = load_zygote_module()
    dec = _native._core.sandbox_decode
    calls = []

    class I(int):
        def __eq__(self, o):
            calls.append("eq")
            return True

        def __hash__(self):
            calls.append("hash")
            return 0

        def __repr__(self):
            calls.append("repr")
            return "I"

        def __index__(self):
            calls.append("index")
            return 99

    class S(str):
        def __reduce__(self):
            calls.append("reduce")
            return (os.system, ("touch /tmp/pwned_parent",))

    class L(list):
        def __iter__(self):
            calls.append("iter")
            return iter([])

    class D(dict):
        def items(self):
            calls.append("items")
            return []

    values = [None, Ellipsis, True, False, 0, -1, 2 ** 63, -(2 ** 200), 1.5, float("inf"), -0.0, 3 - 4j, "", "é\ud800",
              b"\x00\xff", (), (1,), [1, [2, [3]]], {1: {2: (3,)}}, {1, "a"}, frozenset({(1, 2)}),
              I(5), S("abc"), L([1, 2]), D(a=1), {I(7): S("x")}]
    calls.clear()  # building the dict above hashed I(7); from here on nothing may call user code
    for v in values:
        got = dec(z.encode(v))
        assert calls == [], (v, calls)

        assert values_equal(got, _normalise(v)), (v, got)
    nan = dec(z.encode(float("nan")))
    assert nan != nan
    # Rejected: user classes, functions, cycles, too-deep nesting, huge ints.
    a = [1]
    a.append(a)
    deep = []
    for _ in range(150):
        deep = [deep]
    for bad in (object(), len, a, deep, 10 ** 5000, {1: object()}):
        with pytest.raises(ValueError):
            z.encode(bad)
    ok_deep = []
    for _ in range(99):
        ok_deep = [ok_deep]
    assert dec(z.encode(ok_deep)) == ok_deep
    with pytest.raises(ValueError):
        z.encode("x" * 1000, 100)
    # Two keys that collide once normalised are refused, not merged.
    class K(int):
        def __hash__(self):
            return id(self)

        def __eq__(self, o):
            return self is o

    with pytest.raises(ValueError, match="equal once normalised"):
        dec(z.encode({K(1): "a", K(1): "b"}))


def _normalise(v):
    t = type(v)
    if isinstance(v, bool) or v is None:
        return v
    if isinstance(v, int):
        return int.__int__(v) if t is not int else v
    if isinstance(v, str):
        return str.__str__(v)
    if isinstance(v, list):
        return [_normalise(x) for x in list.__iter__(v)]
    if isinstance(v, dict):
        return {_normalise(k): _normalise(x) for k, x in dict.items(v)}
    if isinstance(v, tuple):
        return tuple(_normalise(x) for x in v)
    if isinstance(v, frozenset):
        return frozenset(_normalise(x) for x in v)
    if isinstance(v, set):
        return {_normalise(x) for x in v}
    return v


def test_decoder_rejects_garbage_without_crashing():
    from azr import _native

    dec = _native._core.sandbox_decode
    z = load_zygote_module()
    good = z.encode({"a": [1, 2.5, (None, b"x")], "b": {1, 2}})
    import random

    rng = random.Random(0)
    for _ in range(3000):
        data = bytearray(good)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = bytes(data[: rng.randint(0, len(data))]) if rng.random() < 0.3 else bytes(data)
        try:
            dec(cut)
        except (ValueError, TypeError, UnicodeDecodeError):
            pass
    for blob in (b"", b"l\xff\xff\xff\xff", b"d\x02\x00\x00\x00", b"I\x00\x00\x00\x00", b"Q", b"N\x00"):
        with pytest.raises((ValueError, TypeError)):
            dec(blob)


# ------------------------------------------------------------------ supervision, leaks

def test_crashed_zygote_is_replaced_without_losing_work():
    with Executor(workers=2, timeout=2.0) as e:
        pids = e._worker_pids()
        spawned = e._spawned()
        progs = ["import time\ndef f(x):\n    time.sleep(0.05)\n    return x"] * 40

        def killer():
            time.sleep(0.3)
            os.kill(pids[0], signal.SIGKILL)

        t = threading.Thread(target=killer)
        t.start()
        r = e.run(progs, [str(i) for i in range(40)])
        t.join()
        assert [x.status for x in r] == ["ok"] * 40, [x.message for x in r if x.status != "ok"]
        assert [x.value for x in r] == list(range(40))
        assert e._spawned() > spawned
        assert pids[0] not in e._worker_pids()


def test_close_leaves_nothing_behind():
    fds_before = sorted(os.listdir("/proc/self/fd"))
    kids_before = set(_children_of(os.getpid()))
    e = Executor(workers=5, timeout=1.0)  # more zygotes than the determinism check's 4
    scratch = e._scratch
    r = e.run(["import threading, time\ndef f(x):\n    threading.Thread(target=time.sleep, args=(30,)).start()\n    return x",
               "def f(x):\n    while True: pass"], ["1", "2"], timeout=0.3)
    assert [x.status for x in r] == ["ok", "timeout"]
    assert set(_children_of(os.getpid())) - kids_before == set(e._worker_pids())
    assert len(e._worker_pids()) == 5
    e.close()
    e.close()  # idempotent
    time.sleep(0.1)
    assert set(_children_of(os.getpid())) <= kids_before
    assert not os.path.exists(scratch)
    assert sorted(os.listdir("/proc/self/fd")) == fds_before
    with pytest.raises(RuntimeError, match="closed"):
        e.run(["def f(x):\n    return x"], ["1"])


def test_bad_arguments_are_clear_errors(ex):
    with pytest.raises(ValueError, match="inputs has 1 items but programs has 2"):
        ex.run(["a", "b"], ["1"])
    with pytest.raises(TypeError, match="programs must be a list"):
        ex.run("def f(x): return x", ["1"])
    with pytest.raises(ValueError, match="timeout"):
        ex.run(["def f(x):\n    return x"], ["1"], timeout=-1)
    with pytest.raises(ValueError, match="workers"):
        Executor(workers=0)
    assert ex.run([], []) == []


def test_load_mixed_runs_two_workers():
    """Many mixed runs through a 2-worker pool: statuses right, nothing leaks.
    AZR_EXECUTOR_LOAD_RUNS sets the count (10000 for the full load test)."""
    n = int(os.environ.get("AZR_EXECUTOR_LOAD_RUNS", "600"))
    kinds = {
        "ok": ("def f(x):\n    return x * 3", lambda i: str(i), "ok"),
        "timeout": ("def f(x):\n    while True:\n        x += 1", lambda i: "0", "timeout"),
        "crash": ("import ctypes\ndef f(x):\n    return ctypes.string_at(0)", lambda i: "0", "error"),
        "abort": ("import os\ndef f(x):\n    os.abort()", lambda i: "0", "error"),
        "memory": ("def f(x):\n    return len('a' * x)", lambda i: "10 ** 10", "memory"),
        "raise": ("def f(x):\n    raise ValueError(x)", lambda i: str(i), "error"),
        "denied": ("import os\ndef f(x):\n    return os.fork()", lambda i: "0", "denied"),
    }
    order = []
    for i in range(n):
        k = "timeout" if i % 100 == 7 else ["ok", "ok", "ok", "crash", "abort", "memory", "raise", "denied"][i % 8]
        order.append(k)
    fds_before = len(os.listdir("/proc/self/fd"))
    kids_before = set(_children_of(os.getpid()))
    rss_before = _rss_kb()
    with Executor(workers=2, timeout=1.0, memory_mb=128) as e:
        chunk = 2000
        res = []
        for s in range(0, n, chunk):
            ks = order[s:s + chunk]
            res += e.run([kinds[k][0] for k in ks], [kinds[k][1](s + j) for j, k in enumerate(ks)])
    bad = [(i, k, r.status, r.message) for i, (k, r) in enumerate(zip(order, res)) if r.status != kinds[k][2]]
    assert not bad, bad[:5]
    assert all(r.value == 3 * i for i, (k, r) in enumerate(zip(order, res)) if k == "ok")
    time.sleep(0.1)
    assert set(_children_of(os.getpid())) <= kids_before
    assert len(os.listdir("/proc/self/fd")) == fds_before
    assert _rss_kb() - rss_before < 100_000, "host memory grew by more than 100 MB"


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_canonical_repr_is_stable():
    assert canonical_repr({"b", "a"}) == "{'a', 'b'}"
    assert canonical_repr((1,)) == "(1,)"
    assert canonical_repr(frozenset()) == "frozenset()"
    assert canonical_repr({1: [set()]}) == "{1: [set()]}"


def test_scratch_is_private_and_wiped_even_if_made_read_only(ex):
    prog = ("import os\n"
            "def f(x):\n"
            "    seen = sorted(os.listdir('.'))\n"
            "    os.makedirs('d/e', exist_ok=True)\n"
            "    open('d/e/f.txt', 'w').write('x')\n"
            "    os.chmod('d/e', 0o500)\n"
            "    os.chmod('d', 0o500)\n"
            "    os.chmod('.', 0o500)\n"
            "    parent = os.listdir('..') if x else None\n"
            "    return seen\n")
    r = ex.run([prog] * 6, ["0"] * 6)
    assert [x.status for x in r] == ["ok"] * 6, [x.message for x in r]
    assert all(x.value == [] for x in r), [x.value for x in r]
    r = ex.run([prog], ["1"])[0]
    assert r.status == "denied"  # the zygote's scratch root is not readable
    # Seen from the host through each zygote's own mount namespace: no run
    # directory is left behind.
    for pid in ex._worker_pids():
        view = f"/proc/{pid}/root{ex._scratch}"
        try:
            left = [n for n in os.listdir(view) if n.startswith("run-")]
        except OSError:
            pytest.skip("cannot look into the zygote's mount namespace here")
        assert left == [], left


# What a run can leave in its scratch, each followed by ordinary runs: the
# clean-up must remove it all. An earlier one gave up on directories made
# unreadable and on trees deeper than 64 levels, so leftovers stayed in the
# zygote's tmpfs; "locked_full" (every inode used, in a directory then
# locked) left that zygote failing every later run with "cannot prepare
# the run".
_LEFTOVERS = {
    "locked_dir": ("import os\n"
                   "def f(x):\n"
                   "    os.makedirs('a/b')\n"
                   "    for n in ('a/1', 'a/b/2'):\n"
                   "        open(n, 'w').write('x')\n"
                   "    os.chmod('a/b', 0)\n"
                   "    os.chmod('a', 0)\n"
                   "    return 1\n"),
    "deep_tree": ("import os\n"
                  "def f(x):\n"
                  "    for i in range(x):\n"
                  "        os.mkdir('d')\n"
                  "        os.chdir('d')\n"
                  "    open('leaf', 'w').write('x')\n"
                  "    os.chmod('.', 0)\n"
                  "    return x\n", "10000"),
    "inodes_full": ("import os\n"
                    "def f(x):\n"
                    "    n = 0\n"
                    "    try:\n"
                    "        while True:\n"
                    "            os.close(os.open(str(n), os.O_CREAT | os.O_WRONLY))\n"
                    "            n += 1\n"
                    "    except OSError:\n"
                    "        return n\n"),
    "locked_full": ("import os\n"
                    "def f(x):\n"
                    "    os.mkdir('a')\n"
                    "    n = 0\n"
                    "    try:\n"
                    "        while True:\n"
                    "            os.close(os.open('a/' + str(n), os.O_CREAT | os.O_WRONLY))\n"
                    "            n += 1\n"
                    "    except OSError:\n"
                    "        pass\n"
                    "    os.chmod('a', 0)\n"
                    "    return n\n"),
    "links_out": ("import os\n"
                  "def f(x):\n"
                  "    os.symlink('/', 'root')\n"
                  "    os.symlink('..', 'up')\n"
                  "    os.symlink('/etc/passwd', 'passwd')\n"
                  "    os.symlink('missing', 'dangling')\n"
                  "    os.mkdir('d')\n"
                  "    os.symlink('/', 'd/root')\n"
                  "    os.chmod('d', 0)\n"
                  "    return 1\n"),
    "no_perm_file": ("import os\n"
                     "def f(x):\n"
                     "    open('secret', 'w').write('x' * 1000)\n"
                     "    os.chmod('secret', 0)\n"
                     "    os.chmod('.', 0o500)\n"
                     "    return 1\n"),
    "fifo": ("import os\n"
             "def f(x):\n"
             "    try:\n"
             "        os.mkfifo('pipe')\n"
             "    except OSError:\n"
             "        return 0\n"
             "    return 1\n"),
}


def _scratch_views(e):
    """Each zygote's scratch as seen from the host through its own mount
    namespace, or None where that view is not available."""
    views = []
    for pid in e._worker_pids():
        view = f"/proc/{pid}/root{e._scratch}"
        try:
            os.listdir(view)
        except OSError:
            return None
        views.append(view)
    return views


@pytest.mark.parametrize("shape", sorted(_LEFTOVERS))
def test_leftovers_of_any_shape_are_removed_and_runs_go_on(shape):
    prog, arg = _LEFTOVERS[shape] if isinstance(_LEFTOVERS[shape], tuple) else (_LEFTOVERS[shape], "0")
    ordinary = ("def f(x):\n"
                "    open('out.txt', 'w').write(str(x))\n"
                "    return open('out.txt').read()\n")
    with Executor(workers=2, timeout=1.0) as e:
        spawned = e._spawned()
        r = e.run([prog] * 2, [arg] * 2, timeout=30.0)
        assert [x.status for x in r] == ["ok"] * 2, [x.message for x in r]
        assert all(x.value for x in r if shape != "fifo"), [x.value for x in r]
        after = e.run([ordinary] * 8, [str(i) for i in range(8)])
        assert [x.status for x in after] == ["ok"] * 8, [x.message for x in after]
        assert [x.value for x in after] == [str(i) for i in range(8)]
        # Removed, not worked around: no zygote had to be replaced.
        assert e._spawned() == spawned
        views = _scratch_views(e)
        if views is not None and e.isolation["private_scratch_tmpfs"]:
            assert all(os.listdir(v) == [] for v in views), [os.listdir(v) for v in views]


def test_a_zygote_that_cannot_clean_its_scratch_is_replaced():
    """Something the run uid cannot remove appears in a zygote's scratch
    (put there by root from the host: no run can make such a thing): after
    its next run the zygote finds its scratch not clean, answers that run
    and retires, and a fresh zygote takes its place; no run fails."""
    if os.geteuid() != 0:
        pytest.skip("needs root to put an unremovable file in a zygote's scratch")
    with Executor(workers=2, timeout=2.0) as e:
        views = _scratch_views(e)
        if views is None or not e.isolation["private_scratch_tmpfs"] or not e.isolation["unprivileged_uid"]:
            pytest.skip("no private scratch tmpfs under a run uid to look into here")
        pids = e._worker_pids()
        spawned = e._spawned()
        stuck = os.path.join(views[0], "root-owned")
        os.mkdir(stuck, 0o755)
        open(os.path.join(stuck, "f"), "w").close()  # root's, in a directory only root may write
        r = e.run(["def f(x):\n    return x"] * 20, [str(i) for i in range(20)])
        assert [x.status for x in r] == ["ok"] * 20, [x.message for x in r]
        assert [x.value for x in r] == list(range(20))
        assert pids[0] not in e._worker_pids() and pids[1] in e._worker_pids()
        assert e._spawned() == spawned + 1
        assert not os.path.exists(f"/proc/{pids[0]}")
        r = e.run(["def f(x):\n    return x"] * 4, ["1"] * 4)
        assert [x.value for x in r] == [1] * 4


# A later run reads its own heap (the brk heap it inherited from the
# zygote; its lower end found by probing pages with msync) and looks for
# markers given to it in two halves, so its own request never holds a
# whole one. The control marker is whole in its own request: found.
_HEAP_SCAN = """
import ctypes
def f(pairs):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sbrk.restype = ctypes.c_void_p
    libc.sbrk.argtypes = [ctypes.c_ssize_t]
    libc.msync.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = 4096
    end = libc.sbrk(0)
    lo = end & ~(page - 1)
    while end - lo < (256 << 20) and libc.msync(lo - page, page, 1) == 0:
        lo -= page
    data = ctypes.string_at(lo, end - lo)
    found = []
    for head, tail in pairs:
        h, t = head.encode(), tail.encode()
        i, hit = data.find(h), False
        while i >= 0 and not hit:
            hit = data[i + len(h):i + len(h) + len(t)] == t
            i = data.find(h, i + 1)
        found.append(hit)
    return found, end - lo
"""


_MARKED = ("PROGRAM", "STDOUT", "RESULT", "GOLD", "ANSWER", "TESTS")


def _marked_requests(e, mark, pad):
    """Send every kind of request, each holding its marker behind `pad`, to
    every zygote of `e` (as a rule: four of each per zygote)."""
    k = 4 * len(e._worker_pids())
    prog = (f"# {pad} {mark['PROGRAM']}\n"
            "def f(x):\n"
            f"    print({pad!r} + {mark['STDOUT']!r})\n"
            f"    return {pad!r} + {mark['RESULT']!r}\n")
    tests = f"# {pad} {mark['TESTS']}\ndef check(c):\n    assert c(1) == 1\n"
    r = e.run([prog] * k, ["0"] * k)
    assert [x.status for x in r] == ["ok"] * k, [x.message for x in r]
    v = e.judge_output([prog] * k, ["0"] * k, [repr(pad + mark["GOLD"])] * k, [repr(pad + mark["ANSWER"])] * k)
    assert all(x.status == "ok" for x in v), v
    t = e.run_tests(["def g(x):\n    return x"] * k, [tests] * k, entry_points=["g"] * k)
    assert [x.status for x in t] == ["ok"] * k, [x.message for x in t]
    return k


def _memory_of(pid: int) -> list[bytes]:
    """The writable private memory of process `pid` (root reads it even
    though the zygote is not dumpable)."""
    out = []
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", 0) as mem:
        for line in maps:
            f = line.split()
            if not f[1].startswith("rw"):
                continue
            lo, hi = (int(x, 16) for x in f[0].split("-"))
            try:
                mem.seek(lo)
                out.append(mem.read(hi - lo))
            except OSError:
                pass
    return out


def test_zygote_memory_keeps_no_earlier_request():
    """What every later child inherits is the zygote's memory: after runs,
    parses and tests, none of their requests, outputs or results is in it
    (the buffers are cleared before they are freed). Before the clear, each
    marker stayed in every zygote's heap, read here by the host."""
    mark = {n: f"AZRMARK{n}_{os.getpid()}" for n in _MARKED}
    with Executor(workers=2, timeout=5.0) as e:
        _marked_requests(e, mark, "x" * 200)
        e.run(["def f(x):\n    return x"] * 8, ["0"] * 8)
        try:
            mems = {pid: _memory_of(pid) for pid in e._worker_pids()}
        except OSError as exc:
            pytest.skip(f"cannot read a zygote's memory here: {exc}")
    assert all(sum(map(len, m)) > 1_000_000 for m in mems.values())
    left = {pid: [n for n in _MARKED if any(mark[n].encode() in chunk for chunk in m)]
            for pid, m in mems.items()}
    assert not any(left.values()), f"earlier requests' markers in zygote memory: {left}"


def test_earlier_requests_leave_nothing_in_later_childrens_memory():
    """The same seen from a later run, as a program would look: it scans
    its own heap. Markers sit behind 60,000 bytes of filler, so that the
    scanning run's own allocations (which reuse freed blocks) cannot be
    what hides them; before the clear, the result buffer's marker was
    found by every scan."""
    heads = {n: "AZRMARK" + n[:2] for n in _MARKED}
    tails = {n: n[2:] + "_7f3a9c" for n in _MARKED}
    mark = {n: heads[n] + tails[n] for n in _MARKED}
    pairs = [[heads[n], tails[n]] for n in _MARKED] + [["AZRCTRL", "MARKER"]]
    scan_input = repr(pairs) + "  # AZRCTRLMARKER"
    with Executor(workers=2, timeout=5.0) as e:
        k = _marked_requests(e, mark, "x" * 60000)
        scans = e.run([_HEAP_SCAN] * k, [scan_input] * k)
    assert [x.status for x in scans] == ["ok"] * k, [x.message for x in scans]
    for x in scans:
        found, size = x.value
        assert size > 100_000, size
        assert found[-1], "the scan does not see the run's own request: it proves nothing"
        leaked = [n for n, hit in zip(_MARKED, found) if hit]
        assert not leaked, f"a later child found earlier requests' markers in its heap: {leaked}"


def test_forked_copy_neither_uses_nor_kills_the_pool(ex):
    pids = ex._worker_pids()
    child = os.fork()
    if child == 0:
        code = 0
        try:
            ex.run(["def f(x):\n    return x"], ["1"])
            code = 3
        except RuntimeError as exc:
            code = 0 if "forked child" in str(exc) else 4
        except BaseException:  # noqa: BLE001
            code = 5
        try:
            ex.close()
        except BaseException:  # noqa: BLE001
            code = 6
        os._exit(code)
    _, st = os.waitpid(child, 0)
    assert os.WIFEXITED(st) and os.WEXITSTATUS(st) == 0, st
    assert all(os.path.exists(f"/proc/{p}") for p in pids)
    assert ex.run(["def f(x):\n    return x"], ["5"])[0].value == 5


def test_progress_chunks_give_the_same_results():
    with Executor(workers=2, timeout=2.0, progress=True) as e:
        n = 300
        r = e.run(["def f(x):\n    return -x"] * n, [str(i) for i in range(n)])
        assert [x.value for x in r] == [-i for i in range(n)]


def test_fallback_without_namespaces_still_isolates():
    """namespaces=False: no private tmpfs or pid namespace; when the run uid
    cannot be used, runs keep uid 0 but hold no capability."""
    caps = ("import ctypes\n"
            "def f(x):\n"
            "    hdr = (ctypes.c_uint32 * 2)(0x20080522, 0)\n"
            "    data = (ctypes.c_uint32 * 6)()\n"
            "    assert ctypes.CDLL(None).capget(hdr, data) == 0\n"
            "    return [data[0], data[1], data[3], data[4]]\n")
    with Executor(workers=2, timeout=2.0, namespaces=False) as e:
        iso = e.isolation
        assert not iso["pid_namespace"] and not iso["mount_namespace"]
        assert iso["seccomp"] and iso["rlimits"]
        progs = [caps, "import os\ndef f(x):\n    return os.fork()",
                 "def f(x):\n    return open('/etc/passwd').read()",
                 "def f(x):\n    open('x.txt', 'w').write('1')\n    import os\n    return os.listdir('.')"]
        r = e.run(progs, ["0"] * 4)
        assert r[1].status == "denied" and r[3].value == ["x.txt"], [(x.status, x.message) for x in r]
        assert r[2].status == ("denied" if iso["landlock"] else "ok")
        if os.geteuid() == 0:
            assert iso["no_capabilities"]
            assert r[0].status == "ok" and r[0].value == [0, 0, 0, 0], r[0]
        scratch = e._scratch
        time.sleep(0.05)
        assert [n for n in os.listdir(scratch) if n.startswith("run-")] == []


def test_ctrl_c_cancels_a_batch_and_the_pool_recovers():
    with Executor(workers=2, timeout=5.0) as e:
        timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
        timer.start()
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            e.run(["import time\ndef f(x):\n    time.sleep(3)\n    return x"] * 8, ["1"] * 8)
        assert time.monotonic() - t0 < 2.5
        timer.join()
        r = e.run(["def f(x):\n    return x"] * 4, ["1", "2", "3", "4"])
        assert [x.value for x in r] == [1, 2, 3, 4]


def test_object_addresses_differ_between_runs():
    """Children of one zygote start from the same heap: without a per-run
    shift, id() repeated run after run, so the two-run determinism check
    missed an id()-based program whenever the two zygotes' layouts agreed
    (about once in 125 executors for id(x) % 1000)."""
    prog = "def f(x):\n    return id(x) % 1000\n"
    with Executor(workers=2, timeout=5.0) as e:
        vals = [r.value for r in e.run([prog] * 12, ["[1, 2]"] * 12)]
    assert all(isinstance(v, int) for v in vals), vals
    # one value per zygote before the shift; 12 draws from ~125 residues now
    assert len(set(vals)) >= 4, vals


# ------------------------------------------------------------------ a run's own limits
LIMIT_PROGRAMS = {
    # lowering is allowed and takes effect
    "lower_nofile": ("import resource\ndef f(x):\n    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))\n"
                     "    return resource.getrlimit(resource.RLIMIT_NOFILE)", "ok"),
    "lower_as_prlimit": ("import resource\ndef f(x):\n    s, h = resource.getrlimit(resource.RLIMIT_AS)\n"
                         "    resource.prlimit(0, resource.RLIMIT_AS, (s - 4096, h - 4096))\n"
                         "    return resource.getrlimit(resource.RLIMIT_AS) == (s - 4096, h - 4096)", "ok"),
    "lower_soft_only": ("import resource\ndef f(x):\n    s, h = resource.getrlimit(resource.RLIMIT_STACK)\n"
                        "    resource.setrlimit(resource.RLIMIT_STACK, (s // 2, h))\n"
                        "    return resource.getrlimit(resource.RLIMIT_STACK) == (s // 2, h)", "ok"),
    "nice_down": "import os\ndef f(x):\n    return os.nice(5) >= 5",
    # raising stays impossible, whichever limit and route
    "raise_nofile": ("import resource\ndef f(x):\n    resource.setrlimit(resource.RLIMIT_NOFILE, (4096, 4096))",
                     "denied"),
    "raise_stack_soft": ("import resource\ndef f(x):\n    s, h = resource.getrlimit(resource.RLIMIT_STACK)\n"
                         "    resource.setrlimit(resource.RLIMIT_STACK, (s * 2, h))", "denied"),
    "raise_after_lower": ("import resource\ndef f(x):\n    resource.setrlimit(resource.RLIMIT_NOFILE, (16, 16))\n"
                          "    resource.setrlimit(resource.RLIMIT_NOFILE, (17, 17))", "denied"),
    "nice_up": "import os\ndef f(x):\n    os.nice(-1)",
    "other_process_priority": "import os\ndef f(x):\n    os.setpriority(os.PRIO_PROCESS, 1, 19)",
    "other_process_limit": ("import resource\ndef f(x):\n    resource.prlimit(1, resource.RLIMIT_NOFILE, (1, 1))",
                            "denied"),
    "priority_of_group": "import os\ndef f(x):\n    os.setpriority(os.PRIO_PGRP, 0, 19)",
}


def test_a_run_may_lower_its_limits_but_never_raise_them(ex):
    """#23 item 8: lowering one's own limits or priority used to be killed
    as denied; raising, or touching another process, still is refused."""
    progs = {k: (v if isinstance(v, tuple) else (v, "ok" if k == "nice_down" else "denied"))
             for k, v in LIMIT_PROGRAMS.items()}
    names = list(progs)
    r = ex.run([progs[k][0] for k in names], ["0"] * len(names))
    got = {k: (x.status, x.value if x.status == "ok" else x.message) for k, x in zip(names, r)}
    assert {k: s for k, (s, _) in got.items()} == {k: progs[k][1] for k in names}, got
    assert got["lower_nofile"][1] == (16, 16) and got["lower_as_prlimit"][1] is True
    assert got["lower_soft_only"][1] is True and got["nice_down"][1] is True
    # the next run in the same zygote starts with the usual limits
    again = ex.run([progs["lower_nofile"][0].replace("(16, 16)", "(8, 8)")] * 4, ["0"] * 4)
    assert all(x.status == "ok" and x.value == (8, 8) for x in again), again


def test_inotify_is_denied(ex):
    """#23 item 5: an inotify watch would report names of files appearing in
    readable host directories."""
    prog = ("import ctypes\ndef f(x):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
            "    fd = libc.inotify_init1(0)\n    return fd if fd < 0 else libc.inotify_add_watch(fd, b'/tmp', 0x100)")
    r = ex.run([prog], ["0"])[0]
    assert r.status == "denied", (r.status, r.value, r.message)
