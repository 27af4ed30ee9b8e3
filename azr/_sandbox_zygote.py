"""The Python driver of one sandbox zygote (never imported by azr itself).

Started by the supervisor (csrc/sandbox/pool.c) as

    python -S -s -B -P _sandbox_zygote.py EXT_PATH SCRATCH CONFIG_JSON IN_PID_NS

with an empty environment except PYTHONHASHSEED. It loads the `_zygote`
extension by path (not through the azr package, which would pull NumPy and
OpenBLAS threads into the zygote), pre-imports the allowed standard library,
then hands control to the C fork server. `serve()` returns only inside a
forked child whose isolation layers are all installed; the child runs exactly
one request and leaves with os._exit, so no interpreter runs user code twice.

Owns: what a child does with a request (literal-only argument parsing, the
AST deny-list, running f, running tests, parsing answers) and how exceptions
become statuses. Must not: keep anything the host knows about expected
answers (there is nothing to find in these frames), or write anything but one
result frame on the private pipe.
"""
import ast
import builtins
import errno
import os
import sys

if __name__ == "__main__":
    # A zygote reads its configuration and deny-lists with json's pure-Python
    # code: the C accelerator `_json` would be one more shared library mapped
    # in the zygote, and each shared library is five mappings that every fork
    # copies and every exit tears down. json's own modules are then taken out
    # of sys.modules (the driver keeps its reference), so a program's
    # `import json` still loads the accelerated module, in that child only.
    # (Imported as a module -- by the tests -- it leaves sys.modules alone.)
    sys.modules["_json"] = None
    import json
    for _name in ("_json", "json", "json.decoder", "json.scanner", "json.encoder"):
        sys.modules.pop(_name, None)
else:
    import json

# Modules imported once in the zygote so every child starts with them warm.
# Kept small on purpose: every page and every mapping the zygote owns is
# copied at each fork and torn down at each exit -- a C extension module
# alone (five mappings) costs ~1.5% of a trivial run's CPU -- so only what
# many programs import is here (typing, collections and math lead the seed
# programs' imports; heapq, bisect, random and copy are each in under 2% of
# them and import on demand). Executor(preload=...) overrides it.
# What the resource module raises when the kernel refuses a raised limit
# (EPERM: above the hard limit; EINVAL: a soft limit above the hard one).
_RAISE_REFUSED = frozenset({"not allowed to raise maximum limit", "current limit exceeds maximum limit"})

PRELOAD = ("typing", "collections", "math", "re", "itertools", "functools", "string", "operator",
           "ast")

_SAFE_CALLS = {
    "dict": dict, "set": set, "frozenset": frozenset, "list": list, "tuple": tuple,
    "float": float, "int": int, "complex": complex, "str": str, "bytes": bytes, "bool": bool,
    "range": range,
}
_SAFE_CONSTS = {"nan": float("nan"), "inf": float("inf"), "True": True, "False": False, "None": None,
                "Ellipsis": Ellipsis}


def _load_ext(path):
    import importlib.machinery
    import importlib.util

    loader = importlib.machinery.ExtensionFileLoader("_zygote", path)
    spec = importlib.util.spec_from_file_location("_zygote", path, loader=loader)
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


def _ro_paths():
    import os

    cand = [p for p in sys.path if p and os.path.isdir(p)]
    cand += [os.path.join(sys.base_prefix, "lib"), os.path.join(sys.prefix, "lib"),
             "/usr/lib", "/lib", "/lib64", "/usr/lib64", "/usr/local/lib", "/etc/ld.so.cache",
             "/usr/share/zoneinfo"]
    real = []
    for p in cand:
        if os.path.exists(p):
            rp = os.path.realpath(p)
            if rp not in real:
                real.append(rp)
    # Drop paths inside another allowed path (they are covered already).
    real.sort()
    out = []
    for p in real:
        if not any(p.startswith(q.rstrip("/") + "/") for q in out):
            out.append(p)
    return out


# ------------------------------------------------------------------ child side

def _check_literal_code(code, what):
    """Raise ValueError unless compiled expression `code` only names builtin
    constructors and constants: no attributes, no other names, no nested code
    (lambdas, comprehensions), so evaluating it cannot touch any state."""
    for name in code.co_names:
        if name not in _SAFE_CALLS and name not in _SAFE_CONSTS and name != "_":
            raise ValueError(f"name '{name}' is not allowed in {what}")
    for k in code.co_consts:
        if type(k).__name__ == "code":
            raise ValueError(f"lambdas and comprehensions are not allowed in {what}")


def _literal_env():
    env = dict(_SAFE_CALLS)
    env.update(_SAFE_CONSTS)
    env["__builtins__"] = {}
    return env


def _collect(*args, **kwargs):
    return args, kwargs


# The evaluation environments, made once in the zygote. A child uses them as
# they are instead of copying them (a copy would touch, and so copy on write,
# every page holding one of their values); each child is thrown away after
# one request, so nothing it could do to them outlives it.
_LITERAL_ENV = _literal_env()
_ARGS_ENV = dict(_LITERAL_ENV, _=_collect)


def _parse_value(text):
    """An answer or output: ast.literal_eval, or else only constructor calls
    of literals (dict(a=1), frozenset({1}), float('nan')) and the names nan
    and inf -- no arithmetic, so an answer is a value, not a computation."""
    import ast

    tree = ast.parse(text.strip(), "<literal>", "eval")
    try:
        return ast.literal_eval(tree)
    except ValueError:
        pass
    ok_types = (ast.Expression, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.Load,
                ast.keyword, ast.USub, ast.UAdd)
    for n in ast.walk(tree):
        t = type(n)
        if t in ok_types:
            continue
        if t is ast.UnaryOp and type(n.op) in (ast.USub, ast.UAdd):
            continue
        if t is ast.Name and (n.id in _SAFE_CONSTS or n.id in _SAFE_CALLS):
            continue
        if (t is ast.Call and type(n.func) is ast.Name and n.func.id in _SAFE_CALLS
                and not any(type(a) is ast.Starred for a in n.args)
                and all(k.arg is not None for k in n.keywords)):
            continue
        raise ValueError(f"{t.__name__} is not allowed in a literal value")
    code = compile(tree, "<literal>", "eval")
    _check_literal_code(code, "a literal")
    return eval(code, _LITERAL_ENV)


def _parse_args_compiled(src):
    """(args, kwargs) of an input's text, through compile(): the reference
    for the C fast path, and the path for everything it refuses."""
    if not src.strip():
        return (), {}
    code = compile("_(\n" + src + "\n)", "<input>", "eval")
    _check_literal_code(code, "an input")
    return eval(code, _ARGS_ENV)


def _parse_args(z, raw):
    """(args, kwargs) of an input's UTF-8 bytes. Plain literals go through
    the C fast path (z.parse_args, which never compiles: compile() touches,
    and so copies on write, many of the zygote's pages); whatever it
    refuses goes through _parse_args_compiled, which accepts or raises. The
    two agree exactly on every input the fast path accepts
    (tests/test_literal_fastpath.py)."""
    got = z.parse_args(raw)
    if got is not None:
        return got
    return _parse_args_compiled(raw.decode("utf-8", "surrogatepass"))


# Deny-lists parsed in the zygote, by their exact JSON bytes: the Executor's
# default one arrives in the zygote's configuration, so a child validating
# against it neither parses JSON nor builds the sets (a third of a validate
# run's cost in a fresh child). Any other deny-list is parsed in the child.
_DENY_CACHE = {}


def _deny_sets(raw):
    """(modules, names, attributes) frozensets of a deny-list's JSON bytes."""
    got = _DENY_CACHE.get(raw)
    if got is None:
        d = json.loads(raw.decode("utf-8") or "{}")
        got = (frozenset(d.get("modules", ())), frozenset(d.get("names", ())),
               frozenset(d.get("attributes", ())))
    return got


def _deny_check(tree, deny, ast):
    """Return a message naming the first denied construct, or None. `deny`
    is the (modules, names, attributes) triple of _deny_sets.

    One pass over the tree; only the few node types that matter are looked
    at (a dict dispatch on the exact type, not a chain of isinstance)."""
    mods, names, attrs = deny
    attr_funcs = {"getattr", "setattr", "delattr", "hasattr"}

    def mod_denied(name):
        parts = name.split(".")
        return any(".".join(parts[:i]) in mods for i in range(1, len(parts) + 1))

    def on_import(n):
        for al in n.names:
            if mod_denied(al.name):
                return f"import of denied module '{al.name}'"
        return None

    def on_import_from(n):
        if n.level:
            return "relative import"
        mod = n.module or ""
        if mod_denied(mod):
            return f"import from denied module '{mod}'"
        for al in n.names:
            if mod_denied(mod + "." + al.name):
                return f"import of denied name '{mod}.{al.name}'"
        return None

    def on_name(n):
        return f"use of denied name '{n.id}'" if n.id in names else None

    def on_attribute(n):
        return f"access to denied attribute '{n.attr}'" if n.attr in attrs else None

    def on_constant(n):
        v = n.value
        if type(v) is str and (v in attrs or (v in names and v.startswith("__"))):
            return f"string naming a denied attribute or builtin '{v}'"
        return None

    def on_call(n):
        fn = n.func
        if type(fn) is ast.Name and fn.id in attr_funcs:
            if len(n.args) < 2 or not (type(n.args[1]) is ast.Constant and type(n.args[1].value) is str):
                return f"{fn.id}() with a computed attribute name"
            v = n.args[1].value
            if v.startswith("__") and v.endswith("__"):
                return f"{fn.id}() of dunder attribute '{v}'"
        return None

    handlers = {ast.Import: on_import, ast.ImportFrom: on_import_from, ast.Name: on_name,
                ast.Attribute: on_attribute, ast.Constant: on_constant, ast.Call: on_call}
    get = handlers.get
    for n in ast.walk(tree):
        h = get(type(n))
        if h is not None:
            why = h(n)
            if why:
                return f"{why} (line {getattr(n, 'lineno', '?')})"
    return None


def _describe(exc):
    try:
        name = type(exc).__name__
        if type(name) is not str:
            name = "Exception"
    except BaseException:
        name = "Exception"
    try:
        text = str(exc)
        if type(text) is not str:
            text = "<unprintable>"
    except BaseException:
        text = "<unprintable>"
    where = ""
    try:
        tb = exc.__traceback__
        line = None
        while tb is not None:
            if tb.tb_frame.f_code.co_filename in ("<program>", "<tests>"):
                line = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        if line:
            where = f" ({line[0][1:-1]} line {line[1]})"
    except BaseException:
        pass
    if len(text) > 500:
        text = text[:500] + "..."
    return f"{name}: {text}{where}" if text else f"{name}{where}"


def _handle(z, mode, a, b, c):
    """Do what one request asks; return (status, value, message). Never
    raises (every failure of the program is a status)."""
    status = z.ERROR
    msg = ""
    value = None
    try:
        # (random reseeds itself in each child: it registers an at-fork hook.)
        if mode == z.MODE_PROBE:
            status = z.OK
        elif mode == z.MODE_PARSE:
            try:
                value = _parse_value(a.decode("utf-8", "surrogatepass"))
                status = z.OK
            except MemoryError:
                status, msg = z.MEMORY, "out of memory while parsing"
            except BaseException as exc:  # noqa: BLE001 - any failure is a parse failure
                status, msg = z.ERROR, "cannot parse as a literal: " + _describe(exc)
        else:
            src = a.decode("utf-8", "surrogatepass")
            stage = "syntax"
            try:
                if mode == z.MODE_VALIDATE:
                    tree = ast.parse(src, "<program>", "exec")
                    code = compile(tree, "<program>", "exec")
                else:
                    code = compile(src, "<program>", "exec")
            except (SyntaxError, ValueError) as exc:
                status, msg = z.SYNTAX, _describe(exc)
                stage = None
            if stage and mode == z.MODE_VALIDATE:
                why = _deny_check(tree, _deny_sets(c), ast)
                if why:
                    status, msg = z.DENIED, why
                    stage = None
            if stage:
                stage = "input"
                if mode == z.MODE_TESTS:
                    tsrc = b.decode("utf-8", "surrogatepass")
                    try:
                        tcode = compile(tsrc, "<tests>", "exec")
                    except (SyntaxError, ValueError) as exc:
                        status, msg = z.SYNTAX, "tests: " + _describe(exc)
                        stage = None
                else:
                    try:
                        args, kwargs = _parse_args(z, b)
                    except MemoryError:
                        raise
                    except BaseException as exc:  # noqa: BLE001
                        status, msg = z.ERROR, "bad input: " + _describe(exc)
                        stage = None
            if stage:
                ns = {"__name__": "__main__", "__builtins__": builtins}
                exec(code, ns)
                if mode == z.MODE_TESTS:
                    exec(tcode, ns)
                    entry = c.decode("utf-8")
                    check = ns.get("check")
                    if entry and callable(check):
                        if entry not in ns:
                            raise NameError(f"entry point '{entry}' is not defined by the program")
                        value = check(ns[entry])
                    status = z.OK
                else:
                    fn = ns.get("f")
                    if not callable(fn):
                        status, msg = z.ERROR, "the program does not define a function f"
                    else:
                        value = fn(*args, **kwargs)
                        status = z.OK
    except MemoryError:
        value = None
        status, msg = z.MEMORY, "MemoryError: the run exceeded its memory limit"
    except PermissionError as exc:
        value = None
        status, msg = z.DENIED, _describe(exc)
    except FileNotFoundError as exc:
        value = None
        # With the minimal root a host path is not there at all; reaching for
        # one is still an attempt the sandbox refused.
        status, msg = (z.DENIED if _outside_view(exc) else z.ERROR), _describe(exc)
    except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt... are run errors
        value = None
        if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
            status, msg = z.MEMORY, _describe(exc)
        elif type(exc) is ValueError and str(exc) in _RAISE_REFUSED:
            status, msg = z.DENIED, _describe(exc)  # the kernel refused raising a resource limit
        else:
            status, msg = z.ERROR, _describe(exc)
    return status, value, msg


# What a run may see: its directory (set in each child before the program
# runs) and the read-only paths the zygote exposes (set at start-up).
_VIEW = {"rundir": None, "ro": ()}
_realpath = os.path.realpath


def _under(p, root):
    root = root.rstrip("/")
    return p == root or p.startswith(root + "/")


def _outside_view(exc):
    """True when a file the run asked for (either name of the error, links
    followed) lies outside its directory and the read-only paths."""
    rundir = _VIEW["rundir"]
    if rundir is None:
        return False
    for name in (exc.filename, exc.filename2):
        if not isinstance(name, (str, bytes)):
            continue
        try:
            name = os.fsdecode(name)
            p = _realpath(name if name.startswith("/") else rundir + "/" + name)
        except BaseException:  # noqa: BLE001 - a name that cannot be resolved says nothing
            continue
        if not _under(p, rundir) and not any(_under(p, r) for r in _VIEW["ro"]):
            return True
    return False


def _shift_heap():
    """Allocate 0-15 small objects in each of the allocator's 16-byte size
    classes from 48 to 288 bytes, a random number per class (~30 us), and
    return them.
    Every child forked from one zygote otherwise allocates at the same
    addresses, so id() repeats run after run, and two zygotes' layouts
    agree modulo 1000 once in ~125 pairs: validate's two-run check then
    missed a program returning id(x) % 1000 on every try with that pair."""
    try:
        r = os.urandom(16)
    except OSError:
        return None
    return [bytes(16 * k + 1) for k in range(16) for _ in range(r[k] & 15)]


def _child(z, req, out_streams):
    """Inside a forked, isolated child: run the request, send one result
    frame, leave at once (no interpreter finalisation)."""
    mode, a, b, c, cap = req
    keep = _shift_heap()  # noqa: F841 - alive for the child's life
    try:
        _VIEW["rundir"] = os.getcwd()
    except OSError:
        pass
    status, value, msg = _handle(z, mode, a, b, c)
    for s in out_streams:
        try:
            s.flush()
        except BaseException:  # noqa: BLE001
            pass
    try:
        if status == z.OK:
            z.reply_value(value, cap)
        else:
            z.reply(status, msg)
    except BaseException:  # noqa: BLE001 - the pipe may be gone (closed by the program)
        pass
    os._exit(0)


# Our own requests, run in the zygote before it serves: they take the code
# paths every child takes (compile, argument parsing by the C fast path and
# by the compile fallback, the deny-list walk, literal parsing, test
# running, the encoder), so the interpreter's caches, the adaptive bytecode
# of these functions and the allocator's pools are already in the state a
# child needs, and children copy fewer pages on write.
# Trusted constants only: no request from the supervisor ever runs here.
_WARM_DENY = b'{"modules": ["os", "sys"], "names": ["eval", "open"], "attributes": ["__globals__"]}'
_WARM_PROG = (b"def f(a, b='x', *c, **d):\n    s = sorted(a)\n    m = {k: len(k) for k in b}\n"
              b"    return s[::-1], m, ' '.join(b), (1.5, None, True), {2, 3}")
_WARM = (
    (0, b"def f(x):\n    return x + 1", b"5", b""),
    (0, _WARM_PROG, b"[3, 1, 2], ['a', 'bb'], -1, k={'q': (1,)}", b""),
    # The same through the fallback (an escape and a call: no fast path).
    (0, _WARM_PROG, b"[3, 1, 2], 'a\\tb', -1, k=dict(q=(1,))", b""),
    (1, b"import math\ndef f(x, y):\n    return [math.sqrt(i) * y for i in range(x)]", b"3, 2.0", _WARM_DENY),
    (1, b"import os\ndef f(x):\n    return x", b"1", _WARM_DENY),
    (2, b"[1, -2.5, 'x', (True, None), {1: b'2'}, {3}, frozenset(), float('nan'), 1e999]", b"", b""),
    (3, b"def add(a, b):\n    return a + b", b"def check(c):\n    assert c(1, 2) == 3", b"add"),
    (0, b"def f(x):\n    return 1 / x", b"0", b""),
    (0, b"def f(x) return", b"1", b""),
)


# The real-time offset unit: a zygote in pool slot i reads the wall clock
# (i + 1) units ahead. Two live zygotes differ by a whole number of units:
# more than a year (their dates never share a year), and by 1.12 s times a
# factor under 53 modulo a minute (their seconds-of-minute differ whenever
# the two reads are less than a second apart).
CLOCK_UNIT_NS = (367 * 86400 + 3661) * 1_000_000_000 + 123_456_789
_REALTIME_IDS = frozenset({0, 5, 8, 11})  # CLOCK_REALTIME, _COARSE, _ALARM, CLOCK_TAI


def _pool_slot():
    """The zygote's index in its pool (AZR_ZYGOTE_SLOT, unique among live
    zygotes; removed from the environment at the first call), or None."""
    global _SLOT
    if _SLOT == -1:
        raw = os.environ.pop("AZR_ZYGOTE_SLOT", "")
        _SLOT = int(raw) if raw.isdigit() and len(raw) < 6 else None
    return _SLOT


_SLOT = -1


def _clock_offset_ns():
    """The zygote's real-time offset: from its pool slot, else from its hash
    seed."""
    slot = _pool_slot()
    if slot is not None:
        return (slot + 1) * CLOCK_UNIT_NS
    raw = os.environ.get("PYTHONHASHSEED", "")
    seed = int(raw) if raw.isdigit() else 0
    return (1 + seed % 50) * CLOCK_UNIT_NS


def _shift_wall_clock():
    """Make every route a program has to the real-time clock read it
    shifted by this zygote's offset, so the runs of a validation (each in a
    zygote of its own) read real times that differ by construction and a
    dependence on the date or time of day is caught as nondeterministic.
    Monotonic and boot clocks are shifted by the zygote's time namespace;
    the real-time clock cannot be, so its readers are wrapped here:

    - ``time``: time, time_ns, clock_gettime(_ns) of the real-time clock
      ids, and localtime, gmtime, ctime, asctime and strftime without a time;
    - ``datetime``: the C accelerator is withheld, so the pure-Python
      datetime (now, today, utcnow) reads the wrapped ``time.time``;
    - file times: os.stat, os.lstat, os.fstat and os.scandir entries report
      atime, mtime and ctime shifted by the same offset, so a file the run
      writes looks written at the run's (shifted) time; os.utime takes
      times in that shifted time (shutil.copy2 keeps a file's times).

    Routes left open (docs/sandbox.md, "Real-time clock"): ``posix.stat`` and a
    C-level clock read through ctypes or a re-imported ``_datetime``; the
    default deny-list blocks each of those modules."""
    import time

    off_ns = _clock_offset_ns()
    off_s = off_ns / 1e9
    real = {n: getattr(time, n) for n in ("time", "time_ns", "clock_gettime", "clock_gettime_ns",
                                          "localtime", "gmtime", "ctime", "asctime", "strftime")}

    def t_time():
        return real["time"]() + off_s

    def t_time_ns():
        return real["time_ns"]() + off_ns

    def t_clock_gettime(clk_id):
        v = real["clock_gettime"](clk_id)
        return v + off_s if clk_id in _REALTIME_IDS else v

    def t_clock_gettime_ns(clk_id):
        v = real["clock_gettime_ns"](clk_id)
        return v + off_ns if clk_id in _REALTIME_IDS else v

    def t_localtime(secs=None):
        return real["localtime"](t_time() if secs is None else secs)

    def t_gmtime(secs=None):
        return real["gmtime"](t_time() if secs is None else secs)

    def t_ctime(secs=None):
        return real["ctime"](t_time() if secs is None else secs)

    def t_asctime(t=None):
        return real["asctime"](t_localtime() if t is None else t)

    def t_strftime(fmt, t=None):
        return real["strftime"](fmt, t_localtime() if t is None else t)

    for name, fn in (("time", t_time), ("time_ns", t_time_ns), ("clock_gettime", t_clock_gettime),
                     ("clock_gettime_ns", t_clock_gettime_ns), ("localtime", t_localtime),
                     ("gmtime", t_gmtime), ("ctime", t_ctime), ("asctime", t_asctime),
                     ("strftime", t_strftime)):
        fn.__name__ = fn.__qualname__ = name
        fn.__module__ = "time"
        setattr(time, name, fn)
    if "_datetime" not in sys.modules:
        sys.modules["_datetime"] = None  # datetime falls back to its pure-Python classes
    _shift_file_times(off_ns)


def _shift_file_times(off_ns):
    off_s = off_ns / 1e9
    real_stat, real_lstat, real_fstat, real_scandir, real_utime = os.stat, os.lstat, os.fstat, os.scandir, os.utime
    extra_fields = ("st_blksize", "st_blocks", "st_rdev", "st_flags", "st_gen", "st_birthtime")

    def shifted(r):
        seq = list(r[:10])
        extra = {k: getattr(r, k) for k in extra_fields if hasattr(r, k)}
        for i, k in ((7, "st_atime"), (8, "st_mtime"), (9, "st_ctime")):
            ns = getattr(r, k + "_ns") + off_ns
            seq[i] = ns // 1_000_000_000
            extra[k] = getattr(r, k) + off_s
            extra[k + "_ns"] = ns
        return os.stat_result(seq, extra)

    def stat(path, *, dir_fd=None, follow_symlinks=True):
        return shifted(real_stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks))

    def lstat(path, *, dir_fd=None):
        return shifted(real_lstat(path, dir_fd=dir_fd))

    def fstat(fd):
        return shifted(real_fstat(fd))

    def utime(path, times=None, *, ns=None, dir_fd=None, follow_symlinks=True):
        # times given are in the run's shifted time (e.g. copied from a stat)
        if times is not None and isinstance(times, tuple) and len(times) == 2:
            times = (times[0] - off_s, times[1] - off_s)
        if ns is not None and isinstance(ns, tuple) and len(ns) == 2:
            ns = (ns[0] - off_ns, ns[1] - off_ns)
        kw = {} if ns is None else {"ns": ns}
        return real_utime(path, times, dir_fd=dir_fd, follow_symlinks=follow_symlinks, **kw)

    class DirEntry:
        """os.DirEntry whose stat() reports shifted file times."""
        __slots__ = ("_e",)

        def __init__(self, e):
            self._e = e

        name = property(lambda self: self._e.name)
        path = property(lambda self: self._e.path)

        def inode(self):
            return self._e.inode()

        def is_dir(self, *, follow_symlinks=True):
            return self._e.is_dir(follow_symlinks=follow_symlinks)

        def is_file(self, *, follow_symlinks=True):
            return self._e.is_file(follow_symlinks=follow_symlinks)

        def is_symlink(self):
            return self._e.is_symlink()

        def stat(self, *, follow_symlinks=True):
            return shifted(self._e.stat(follow_symlinks=follow_symlinks))

        def __fspath__(self):
            return self._e.__fspath__()

        def __repr__(self):
            return f"<DirEntry {self.name!r}>"

    class ScandirIterator:
        __slots__ = ("_it",)

        def __init__(self, it):
            self._it = it

        def __iter__(self):
            return self

        def __next__(self):
            return DirEntry(next(self._it))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self._it.close()

        def close(self):
            self._it.close()

    def scandir(path="."):
        return ScandirIterator(real_scandir(path))

    for name, fn in (("stat", stat), ("lstat", lstat), ("fstat", fstat), ("scandir", scandir), ("utime", utime)):
        fn.__name__ = fn.__qualname__ = name
        setattr(os, name, fn)


def _warm_up(z):
    for _ in range(16):  # > the adaptive interpreter's warm-up count
        for mode, a, b, c in _WARM:
            status, value, _msg = _handle(z, mode, a, b, c)
            if status == z.OK:
                z.encode(value, 1 << 16)


def main():
    ext_path, scratch, cfg_json, in_pid_ns = sys.argv[1:5]
    z = _load_ext(ext_path)
    cfg = json.loads(cfg_json)
    global _WARM
    if isinstance(cfg.get("deny"), str):
        raw = cfg["deny"].encode("utf-8")
        _DENY_CACHE[raw] = _deny_sets(raw)
        # Warm the validate path against the deny-list it will really see.
        _WARM = tuple((m, a, b, raw if c == _WARM_DENY else c) for m, a, b, c in _WARM)
    # typing's C helper `_typing` (one function in 3.11, with a pure-Python
    # fallback in typing.py) would be one more shared library in the zygote;
    # where typing cannot do without it, it is imported after all.
    sys.modules["_typing"] = None
    _shift_wall_clock()
    for name in cfg.get("preload") or PRELOAD:
        for _try in (0, 1):
            try:
                __import__(name)
                break
            except Exception:  # noqa: BLE001 - a missing optional module is not fatal
                sys.modules.pop("_typing", None)
    if sys.modules.get("_typing", 0) is None:
        del sys.modules["_typing"]
    out_streams = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    # A uid of its own per pool slot: RLIMIT_NPROC counts a uid's processes
    # and threads across the machine, so with one uid for every zygote a run
    # that starts many threads would starve concurrent runs elsewhere.
    run_uid = int(cfg.get("run_uid", 61000)) + (_pool_slot() or 0)
    _VIEW["ro"] = tuple(_ro_paths()) + ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")
    layers = z.init(ctl_fd=3, scratch=scratch, ro_paths=list(_VIEW["ro"][:-4]),
                    dev_paths=["/dev/null", "/dev/zero", "/dev/urandom", "/dev/random"],
                    run_uid=run_uid, run_gid=int(cfg.get("run_gid", run_uid)),
                    namespaces=bool(cfg.get("namespaces", True)), in_pid_ns=in_pid_ns == "1",
                    nproc=int(cfg.get("nproc", 512)))
    del layers
    os.environ.clear()
    import gc

    _warm_up(z)
    gc.collect()
    gc.freeze()  # keep the zygote's objects out of the children's collections
    req = z.serve()
    if req is None:
        os._exit(0)
    _child(z, req, out_streams)


if __name__ == "__main__":
    main()
