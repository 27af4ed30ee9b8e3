"""Benchmark loaders on the real files, their errors on missing or malformed
ones, and the download into the cache (against a local HTTP server serving
copies of the real files; this machine need not reach GitHub)."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import json
import re
import socket
import threading
from pathlib import Path

import pytest

from azr.evaluation import TASKS, DataNotFoundError, load_task, resolve_data_dir
from azr.evaluation.datasets import (BENCHMARK_FILES, DataDownloadError, benchmark_cache_dir,
                                     mbpp_deserialize_inputs, task_file)

EXPECTED_COUNTS = {"cruxeval-i": 800, "cruxeval-o": 800, "humaneval+": 164, "mbpp+": 378, "gsm8k": 1319,
                   "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "minerva": 272, "olympiadbench": 675}


@pytest.mark.parametrize("task", TASKS)
def test_real_files_load(shared_data, task):
    probs = load_task(task, shared_data / "benchmarks")
    assert len(probs) == EXPECTED_COUNTS[task]
    assert len({p.id for p in probs}) == len(probs), "problem ids are unique"
    for p in probs:
        assert p.task == task and p.question.strip(), p.id
        # every gold answer is there; the one empty CRUXEval-I input is a call f() of a function without
        # parameters
        assert p.answer.strip() or (task == "cruxeval-i" and p.meta["code"].startswith("def f():")), p.id


def test_fields_match_the_raw_files(shared_data):
    d = shared_data / "benchmarks"
    raw = [json.loads(line) for line in open(d / "cruxeval.jsonl")]
    o, i = load_task("cruxeval-o", d), load_task("cruxeval-i", d)
    assert [p.answer for p in o] == [r["output"] for r in raw]
    assert [p.answer for p in i] == [r["input"] for r in raw]
    assert o[0].meta["code"] == raw[0]["code"] and o[0].id == "sample_0"

    he = load_task("humaneval+", d)
    raw_he = [json.loads(line) for line in gzip.open(d / "HumanEvalPlus-v0.1.10.jsonl.gz", "rt")]
    assert he[0].id == "HumanEval/0" and he[0].meta["entry_point"] == "has_close_elements"
    assert sum(len(p.meta["plus_input"]) for p in he) == sum(len(r["plus_input"]) for r in raw_he)
    assert he[32].meta["atol"] > 0  # find_zero carries a tolerance

    mb = {p.id: p for p in load_task("mbpp+", d)}
    assert mb["Mbpp/2"].meta["base_input"][0] == [(3, 4, 5, 6), (5, 7, 4, 10)]  # tuples restored
    assert mb["Mbpp/793"].meta["plus_input"] == []  # stored as "{}" in the file
    assert all(isinstance(x, complex) for x, in mb["Mbpp/252"].meta["base_input"])

    math500 = load_task("math500", d)
    assert math500[0].answer == "\\left( 3, \\frac{\\pi}{2} \\right)"
    minerva = load_task("minerva", d)
    assert minerva[0].answer == "1.6"  # from the solution's \boxed{1.6}
    ob = load_task("olympiadbench", d)
    assert ob[0].answer == "2"
    assert any(p.meta["multiple"] and "," in p.answer for p in ob)


def test_limit_and_aliases(shared_data):
    d = shared_data / "benchmarks"
    assert [p.id for p in load_task("HumanEvalPlus", d, limit=3)] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    assert len(load_task("math-500", d, limit=0)) == 0
    with pytest.raises(ValueError, match="limit"):
        load_task("gsm8k", d, limit=-1)


def test_data_dir_from_environment(shared_data, monkeypatch):
    monkeypatch.setenv("AZR_DATA_DIR", str(shared_data / "benchmarks"))
    assert len(load_task("aime24")) == 30


def test_missing_file_names_the_expected_file(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError, match=r"HumanEvalPlus-v0\.1\.10\.jsonl\.gz.*does not download"):
        load_task("humaneval+", tmp_path)
    with pytest.raises(DataNotFoundError, match=r"gsm8k/test\.jsonl"):
        load_task("gsm8k", tmp_path)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        load_task("gsm8k", tmp_path / "nope")
    monkeypatch.delenv("AZR_DATA_DIR", raising=False)
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AZR_OFFLINE", "1")  # no data dir, nothing cached, no download allowed
    with pytest.raises(DataNotFoundError, match="AZR_DATA_DIR"):
        load_task("gsm8k")


def test_unknown_and_unavailable_tasks(tmp_path):
    with pytest.raises(ValueError, match="unknown task 'gsm9k'.*known tasks"):
        load_task("gsm9k", tmp_path)
    with pytest.raises(DataNotFoundError, match="not available offline"):
        load_task("livecodebench", tmp_path)


def test_malformed_files_raise_clear_errors(tmp_path):
    (tmp_path / "gsm8k").mkdir()
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q", "answer": "#### 3"}\nnot json\n')
    with pytest.raises(ValueError, match=r"test\.jsonl:2: not valid JSON"):
        load_task("gsm8k", tmp_path)
    (tmp_path / "gsm8k" / "test.jsonl").write_text('{"question": "q"}\n')
    with pytest.raises(ValueError, match=r"lacks field\(s\) \['answer'\]"):
        load_task("gsm8k", tmp_path)
    (tmp_path / "HumanEvalPlus.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ValueError, match="cannot be read"):
        load_task("humaneval+", tmp_path)


def test_mbpp_deserialize_shapes():
    assert mbpp_deserialize_inputs("Mbpp/2", [[[1, 2], [3]]]) == [[(1, 2), (3,)]]
    assert mbpp_deserialize_inputs("Mbpp/63", [[[[1, 2], [3, 4]]]]) == [[[(1, 2), (3, 4)]]]
    assert mbpp_deserialize_inputs("Mbpp/115", [[[[1], []]]]) == [[[{1}, {}]]]
    assert mbpp_deserialize_inputs("Mbpp/580", [[[1, [2, 3]], 4]]) == [((1, (2, 3)), 4)]
    assert mbpp_deserialize_inputs("Mbpp/3", [[1, [2]]]) == [[1, [2]]]  # untouched


# --------------------------------------------------------------------------- download into the cache

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _files_under(d: Path) -> list[Path]:
    return sorted(p for p in d.rglob("*") if not p.is_dir()) if d.exists() else []


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """No data dir given, an empty cache in tmp_path: the download path."""
    for var in ("AZR_DATA_DIR", "AZR_OFFLINE", "AZR_BENCHMARK_MIRROR", "AZR_DOWNLOAD_TIMEOUT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "benchmarks"


class _Mirror:
    """A local HTTP server over ``root``, recording the paths requested.
    ``no_length`` sends bodies without Content-Length (the connection closes at the end)."""

    def __init__(self, root: Path):
        self.root, self.requests, self.no_length = root, [], False
        mirror = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=str(mirror.root), **k)

            def log_message(self, *a):
                pass

            def do_GET(self):
                mirror.requests.append(self.path)
                local = mirror.root / self.path.lstrip("/")
                if mirror.no_length and local.is_file():
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(local.read_bytes())
                    self.close_connection = True
                    return
                super().do_GET()

        root.mkdir(parents=True, exist_ok=True)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/bench/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def put(self, name: str, data: bytes) -> None:
        p = self.root / "bench" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    m = _Mirror(tmp_path / "mirror")
    monkeypatch.setenv("AZR_BENCHMARK_MIRROR", m.url)
    yield m
    m.close()


def test_pinned_sources_match_the_shared_copies(shared_data):
    """Every file a task reads first is pinned, as are the paper's seed files (azr_seeds/, beside the
    benchmarks), and the pins are the real files' size and hash."""
    from azr.evaluation.datasets import _FILES

    seeds = {name for name in BENCHMARK_FILES if name.startswith("azr_seeds/")}
    assert seeds and {names[0] for names in _FILES.values()} | seeds == set(BENCHMARK_FILES)
    for name, bf in BENCHMARK_FILES.items():
        local = shared_data / name if name in seeds else shared_data / "benchmarks" / name
        assert local.stat().st_size == bf.size, name
        assert _sha256(local) == bf.sha256, name
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", bf.url), bf.url
        assert bf.url.endswith("/" + bf.path) and bf.commit in bf.url


def test_download_verifies_and_loads_the_same_problems(shared_data, cache, mirror):
    bench = shared_data / "benchmarks"
    for name in ("azr_math_eval/aime24/test.jsonl", "HumanEvalPlus-v0.1.10.jsonl.gz", "cruxeval.jsonl"):
        mirror.put(name, (bench / name).read_bytes())
    assert resolve_data_dir() == benchmark_cache_dir() == cache

    assert load_task("aime24") == load_task("aime24", bench)
    assert mirror.requests == ["/bench/azr_math_eval/aime24/test.jsonl"]
    assert _sha256(cache / "azr_math_eval/aime24/test.jsonl") == _sha256(bench / "azr_math_eval/aime24/test.jsonl")

    # a gzip file goes through byte for byte; cruxeval-i and -o share one download
    assert load_task("humaneval+", limit=5) == load_task("humaneval+", bench, limit=5)
    assert load_task("cruxeval-o") == load_task("cruxeval-o", bench)
    assert load_task("cruxeval-i", limit=3) == load_task("cruxeval-i", bench, limit=3)
    assert len(mirror.requests) == 3

    # cached now: no further requests, and no temporary files left beside the downloads
    assert task_file("aime24") == cache / "azr_math_eval/aime24/test.jsonl"
    assert len(mirror.requests) == 3
    assert [p.relative_to(cache).as_posix() for p in _files_under(cache)] == [
        "HumanEvalPlus-v0.1.10.jsonl.gz", "azr_math_eval/aime24/test.jsonl", "cruxeval.jsonl"]


def test_stream_without_length_is_capped_then_accepted(shared_data, cache, mirror):
    name = "azr_math_eval/aime25/test.jsonl"
    data = (shared_data / "benchmarks" / name).read_bytes()
    mirror.no_length = True
    mirror.put(name, data + b"\n" * 100_000)  # more than the pinned size, and no Content-Length to tell
    with pytest.raises(DataDownloadError, match=rf"exceeds the expected {len(data)} bytes"):
        load_task("aime25")
    assert _files_under(cache.parent) == []
    mirror.put(name, data)
    assert load_task("aime25") == load_task("aime25", shared_data / "benchmarks")


@pytest.mark.parametrize("damage", ["flip", "truncate", "extend"])
def test_corrupt_download_is_rejected_and_leaves_nothing(shared_data, cache, mirror, damage):
    name = "azr_math_eval/amc23/test.jsonl"
    good = (shared_data / "benchmarks" / name).read_bytes()
    data = bytearray(good)
    if damage == "flip":
        data[1000] ^= 0x01  # same size, one bit off
    elif damage == "truncate":
        del data[-10:]
    else:
        data += b"{}\n"
    mirror.put(name, bytes(data))
    with pytest.raises(DataDownloadError) as ei:
        load_task("amc23")
    msg = str(ei.value)
    expected_reason = {"flip": f"SHA-256 mismatch: got {hashlib.sha256(data).hexdigest()}",
                       "truncate": f"announces {len(good) - 10} bytes, expected {len(good)}",
                       "extend": f"announces {len(good) + 3} bytes, expected {len(good)}"}[damage]
    assert expected_reason in msg
    assert name in msg and mirror.url + name in msg and "--data-dir" in msg and "AZR_DATA_DIR" in msg
    assert _files_under(cache.parent) == [], "nothing partial or unverified stays in the cache"


def test_server_down_gives_a_clear_error(cache, monkeypatch):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("AZR_BENCHMARK_MIRROR", f"http://127.0.0.1:{port}")
    with pytest.raises(DataDownloadError) as ei:
        load_task("gsm8k")
    msg = str(ei.value)
    assert f"http://127.0.0.1:{port}/gsm8k/test.jsonl" in msg and "refused" in msg.lower()
    assert "'gsm8k/test.jsonl' is not in the benchmark cache" in msg
    assert "--data-dir" in msg and "AZR_DATA_DIR" in msg and "openai/grade-school-math" in msg
    assert isinstance(ei.value, DataNotFoundError)  # callers catching the old error still do
    assert not cache.parent.exists(), "the folders made for the download are removed again"


def test_unresponsive_server_times_out(cache, monkeypatch):
    with socket.socket() as s:  # accepts connections (backlog) but never answers
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        monkeypatch.setenv("AZR_BENCHMARK_MIRROR", f"http://127.0.0.1:{s.getsockname()[1]}/")
        monkeypatch.setenv("AZR_DOWNLOAD_TIMEOUT", "0.3")
        with pytest.raises(DataDownloadError, match="timed out"):
            task_file("aime24")
    assert _files_under(cache.parent) == []


def test_http_error_and_bad_settings(cache, mirror, monkeypatch):
    with pytest.raises(DataDownloadError, match=r"HTTP Error 404"):
        task_file("math500")  # the mirror lacks it
    monkeypatch.setenv("AZR_DOWNLOAD_TIMEOUT", "soon")
    with pytest.raises(DataDownloadError, match="AZR_DOWNLOAD_TIMEOUT='soon'"):
        task_file("math500")
    monkeypatch.delenv("AZR_DOWNLOAD_TIMEOUT")
    monkeypatch.setenv("AZR_BENCHMARK_MIRROR", "ftp://example.org/bench")
    with pytest.raises(DataDownloadError, match="not an http:// or https:// URL"):
        task_file("math500")
    assert len(mirror.requests) == 1 and _files_under(cache.parent) == []


def test_offline_switch_and_download_false_never_request(shared_data, cache, mirror, monkeypatch):
    mirror.put("gsm8k/test.jsonl", (shared_data / "benchmarks/gsm8k/test.jsonl").read_bytes())
    with pytest.raises(DataNotFoundError, match="downloading is off"):
        task_file("gsm8k", download=False)
    monkeypatch.setenv("AZR_OFFLINE", "1")
    with pytest.raises(DataDownloadError, match=r"AZR_OFFLINE=1 forbids downloading it from https://raw\."):
        load_task("gsm8k")
    assert mirror.requests == []


def test_explicit_data_dir_never_downloads(shared_data, tmp_path, cache, mirror, monkeypatch):
    mirror.put("gsm8k/test.jsonl", (shared_data / "benchmarks/gsm8k/test.jsonl").read_bytes())
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DataNotFoundError, match=r"expected 'gsm8k/test\.jsonl' under .*mine.*--data-dir") as ei:
        load_task("gsm8k", mine)
    assert not isinstance(ei.value, DataDownloadError)
    assert "openai/grade-school-math" in str(ei.value)
    monkeypatch.setenv("AZR_DATA_DIR", str(mine))
    with pytest.raises(DataNotFoundError, match=r"under .*mine.* \(from AZR_DATA_DIR\)"):
        task_file("gsm8k")
    assert mirror.requests == [] and _files_under(mine) == [] and not cache.exists()
    # once the cache has the file, a named directory still does not fall back to it
    monkeypatch.delenv("AZR_DATA_DIR")
    assert load_task("gsm8k", limit=2) == load_task("gsm8k", shared_data / "benchmarks", limit=2)
    with pytest.raises(DataNotFoundError):
        task_file("gsm8k", mine)
    assert len(mirror.requests) == 1
