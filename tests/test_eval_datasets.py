"""Benchmark loaders on the real files, and their errors on missing or malformed ones."""
from __future__ import annotations

import gzip
import json

import pytest

from azr.evaluation import TASKS, DataNotFoundError, load_task
from azr.evaluation.datasets import mbpp_deserialize_inputs

EXPECTED_COUNTS = {"cruxeval-i": 800, "cruxeval-o": 800, "humaneval+": 164, "mbpp+": 378, "gsm8k": 1319,
                   "math500": 500, "aime24": 30, "aime25": 30, "amc23": 40, "minerva": 272, "olympiadbench": 675}


@pytest.mark.parametrize("task", TASKS)
def test_real_files_load(shared_data, task):
    probs = load_task(task, shared_data / "benchmarks")
    assert len(probs) == EXPECTED_COUNTS[task]
    assert len({p.id for p in probs}) == len(probs), "problem ids are unique"
    for p in probs:
        assert p.task == task and p.question.strip() and p.answer.strip() or task == "cruxeval-i"


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
