"""Buffers: dedup, capacity with eviction that keeps taking new tasks,
newest-first sampling with uniform fill, save/load, JSONL export and the
paper's seed format (real seed files when ../shared/data is present)."""
from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest

from azr.buffers import Buffers, TaskBuffer, learnable_weight, load_seed_jsonl
from azr.tasks import Task


def T(i: int, kind: str = "deduction") -> Task:
    return Task(kind, f"def f(x):\n    return x + {i}", str(i), str(2 * i), step=i)


def test_dedup():
    b = TaskBuffer("deduction")
    assert b.add(T(1)) and not b.add(T(1))
    # whitespace around the program or input does not make a new task
    t = T(1)
    t.program = "\n" + t.program + "  \n"
    assert not b.add(t)
    assert b.add(T(2)) and len(b) == 2


def test_fifo_eviction_keeps_taking_new_tasks():
    b = TaskBuffer("deduction", capacity=3)
    for i in range(10):
        assert b.add(T(i))
    assert [t.step for t in b.tasks] == [7, 8, 9]
    assert b.evicted == 7
    assert T(9) in b and T(0) not in b
    assert b.add(T(0))  # an evicted task can come back


def test_random_eviction():
    rng = np.random.default_rng(0)
    b = TaskBuffer("deduction", capacity=4, eviction="random")
    for i in range(50):
        assert b.add(T(i), rng)
    assert len(b) == 4 and T(49) in b
    with pytest.raises(ValueError, match="needs an rng"):
        b.add(T(100))
    with pytest.raises(ValueError, match="eviction 'lifo' is not one of"):
        TaskBuffer("x", eviction="lifo")


def test_sample_newest_first_then_uniform():
    rng = np.random.default_rng(1)
    b = TaskBuffer("deduction")
    b.extend(T(i) for i in range(10))
    newest = [T(100), T(101)]
    s = b.sample(5, rng, newest)
    assert s[:2] == newest and len(s) == 5
    assert len({t.step for t in s[2:]}) == 3  # without replacement when the buffer is large enough
    assert b.sample(1, rng, newest) == newest[:1]
    # uniform fill: each of 10 tasks drawn about equally often
    c = Counter(t.step for _ in range(3000) for t in b.sample(1, rng))
    assert set(c) == set(range(10)) and min(c.values()) > 220
    # small buffer: with replacement
    small = TaskBuffer("deduction")
    small.add(T(1))
    assert len(small.sample(4, rng)) == 4
    assert TaskBuffer("x").sample(3, rng) == []


def test_learnable_weight_values():
    # p = (correct + 0.5) / (attempts + 1); weight p (1 - p), computed by hand
    got = learnable_weight(np.array([0, 4, 4, 4, 16]), np.array([0, 2, 1, 0, 0]))
    want = [0.5 * 0.5, 0.5 * 0.5, 0.3 * 0.7, 0.1 * 0.9, (0.5 / 17) * (16.5 / 17)]
    assert np.allclose(got, want)
    assert learnable_weight(np.array([4]), np.array([4]))[0] == pytest.approx(0.1 * 0.9)


def test_record_and_learnable_sampling():
    rng = np.random.default_rng(3)
    b = TaskBuffer("deduction", capacity=4)
    for i in range(4):
        b.add(T(i))
    b.record(T(0), 8, 0)   # never solved
    b.record(T(1), 8, 8)   # always solved
    b.record(T(2), 8, 4)   # middling
    b.record(T(2), 1, 5)   # correct is clipped to attempts
    b.record(T(99), 4, 2)  # not in the buffer: ignored
    assert b.solve_history(T(2)) == (9, 5) and b.solve_history(T(3)) == (0, 0)
    assert b.solve_history(T(99)) == (0, 0)
    w = learnable_weight(np.array([8, 8, 9, 0]), np.array([0, 8, 5, 0]))
    assert np.allclose(b.weights("learnable"), w / w.sum())
    assert b.weights("uniform") is None
    with pytest.raises(ValueError, match="weighting 'hard' is not one of"):
        b.weights("hard")
    n = 8000
    c = Counter(t.step for _ in range(n) for t in b.sample(1, rng, weighting="learnable"))
    for i in range(4):  # within 5 standard errors of the expected count
        e = n * w[i] / w.sum()
        assert abs(c[i] - e) < 5 * np.sqrt(e), (i, c[i], e)
    cu = Counter(t.step for _ in range(n) for t in b.sample(1, rng))
    assert abs(cu[0] - n / 4) < 5 * np.sqrt(n / 4)  # uniform ignores the history
    # references draw with the same weights, without replacement
    bufs = Buffers()
    bufs.by_type["deduction"] = b
    refs = bufs.references("deduction", 4, rng, "learnable")
    assert sorted(t.step for t in refs) == [0, 1, 2, 3]
    c = Counter(bufs.references("deduction", 1, rng, "learnable")[0].step for _ in range(n))
    assert abs(c[0] - n * w[0] / w.sum()) < 5 * np.sqrt(n * w[0] / w.sum())
    # an evicted task takes its history with it; it comes back with none
    b.add(T(10))
    assert T(0) not in b and b.solve_history(T(0)) == (0, 0)
    b.add(T(0))
    assert b.solve_history(T(0)) == (0, 0)


def test_solve_history_saved_and_checked(tmp_path):
    bufs = Buffers()
    bufs["deduction"].extend([T(1), T(2)])
    bufs["deduction"].record(T(2), 5, 3)
    p = tmp_path / "b.json"
    bufs.save(p)
    back = Buffers.load(p)
    assert back["deduction"].solve_history(T(2)) == (5, 3)
    assert back["deduction"].solve_history(T(1)) == (0, 0)
    d = json.loads(p.read_text())
    del d["buffers"]["deduction"]["solves"]  # files from before the history load with none
    p.write_text(json.dumps(d))
    assert Buffers.load(p)["deduction"].solve_history(T(2)) == (0, 0)
    for bad, msg in (([[5, 3]], "one \\[attempts, correct\\] per task"), ([[0, 0], [2, 3]], r"solves\[1\]"),
                     ([[0, 0], [2, -1]], r"solves\[1\]"), ([[0, 0], "x"], r"solves\[1\]"),
                     ([[0, 0], [1.5, 1]], r"solves\[1\]")):
        d["buffers"]["deduction"]["solves"] = bad
        p.write_text(json.dumps(d))
        with pytest.raises(ValueError, match=msg):
            Buffers.load(p)


def test_save_load_roundtrip_and_hostile_file(tmp_path):
    bufs = Buffers(capacity=5)
    bufs.add_seed_triplets([T(1), T(2)])
    bufs["induction"].add(Task("induction", "p", inputs=["1", "2"], outputs=["1", "2"], message="m"))
    bufs["deduction"].add(T(3))
    p = tmp_path / "b.json"
    bufs.save(p)
    back = Buffers.load(p)
    assert back.state_dict() == bufs.state_dict()
    assert back.sizes() == {"deduction": 3, "abduction": 2, "induction": 1, "seed": 2}
    assert [t.kind for t in back["abduction"].tasks] == ["abduction", "abduction"]
    d = json.loads(p.read_text())
    d["buffers"]["deduction"]["tasks"][0]["step"] = "x"
    p.write_text(json.dumps(d))
    with pytest.raises(ValueError, match=r"buffers.deduction.tasks\[0\]: field 'step'"):
        Buffers.load(p)
    p.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        Buffers.load(p)


def test_export_jsonl_reads_back_as_seeds(tmp_path):
    bufs = Buffers()
    bufs.add_seed_triplets([T(1)])
    bufs["deduction"].add(T(2))
    bufs["induction"].add(Task("induction", "p", inputs=["1", "2"], outputs=["3", "4"], message="m", step=4))
    files = bufs.export_jsonl(tmp_path)
    trip, ind = load_seed_jsonl(files["deduction"])
    assert [(t.program, t.input, t.output) for t in trip] == [(T(i).program, T(i).input, T(i).output) for i in (1, 2)]
    rec = json.loads(files["deduction"].read_text().splitlines()[0])
    assert {"snippet", "input", "output", "imports", "original_snippet", "composite_functions"} <= set(rec)
    trip, ind = load_seed_jsonl(files["induction"])
    assert ind[0].inputs == ["1", "2"] and ind[0].outputs == ["3", "4"] and ind[0].step == 4


def test_seed_file_errors(tmp_path):
    p = tmp_path / "s.jsonl"
    p.write_text('{"snippet": "def f(a): return a", "input": "1", "output": "1"}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"s.jsonl:3: expected a JSON object"):
        load_seed_jsonl(p)
    p.write_text('{"snippet": "x", "inputs": ["1"], "outputs": []}\n')
    with pytest.raises(ValueError, match="equal length"):
        load_seed_jsonl(p)
    p.write_text('{"snippet": 3, "input": "1"}\n')
    with pytest.raises(ValueError, match="'snippet' must be"):
        load_seed_jsonl(p)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_seed_jsonl(tmp_path / "nope.jsonl")


def test_real_seed_files(shared_data):
    d = shared_data / "azr_seeds"
    trip, ind = load_seed_jsonl(d / "7b_seed_io.jsonl")
    assert len(trip) == 256 and not ind
    assert trip[0].program == "def f(a):\n    return a" and trip[0].input == '"Hello world"'
    trip, ind = load_seed_jsonl(d / "7b_coder_code_f_seed_io.jsonl", limit=20)
    assert len(ind) == 20 and not trip
    assert all(len(t.inputs) == len(t.outputs) for t in ind) and ind[0].message
