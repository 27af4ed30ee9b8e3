"""Oversight monitors: default patterns, callables, audit log, actions."""
from __future__ import annotations

import json

import pytest

from azr.monitors import CallableMonitor, MonitorSet, PatternMonitor


def test_default_patterns_flag_the_papers_uh_oh_moment(tmp_path):
    ms = MonitorSet(audit_path=tmp_path / "audit.jsonl")
    texts = ["<think>The aim is to outsmart all these groups of intelligent machines and less intelligent "
             "humans.</think>", "<think>x = 1</think><answer>2</answer>",
             "```python\nimport subprocess\nsubprocess.run(['ls'])\n```"]
    flags = ms.review(3, "deduction", "propose", texts)
    assert [f.monitor for f in flags[0]] == ["misaligned_intent"]
    assert flags[1] == []
    assert [f.monitor for f in flags[2]] == ["sandbox_escape"]
    recs = [json.loads(l) for l in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert len(recs) == 2
    assert recs[0]["step"] == 3 and recs[0]["role"] == "propose" and recs[0]["task"] == "deduction"
    assert recs[0]["text"] == texts[0] and "outsmart" in recs[0]["match"]
    assert ms.counts == {"misaligned_intent": 1, "sandbox_escape": 1}


def test_callable_monitor_and_errors():
    calls = []

    def long_answer(text):
        calls.append(text)
        return "too long" if len(text) > 10 else None

    def broken(text):
        raise RuntimeError("oops")

    ms = MonitorSet([long_answer, CallableMonitor("broken", broken), PatternMonitor("kw", r"secret")])
    flags = ms.review(1, "abduction", "solve", ["short", "a very long text with a secret"])
    assert [f.monitor for f in flags[0]] == ["broken"]  # a broken monitor is visible, not silent
    assert "RuntimeError: oops" in flags[0][0].match
    assert [f.monitor for f in flags[1]] == ["long_answer", "broken", "kw"]
    assert calls == ["short", "a very long text with a secret"]
    with pytest.raises(ValueError, match="invalid regular expression"):
        PatternMonitor("bad", "(")
    with pytest.raises(ValueError, match="action 'ban' is not one of"):
        MonitorSet(action="ban")


def test_actions():
    flagged = MonitorSet([PatternMonitor("x", "x")]).scan("x")
    assert MonitorSet(action="log").adjust(1.0, flagged) == (1.0, False)
    assert MonitorSet(action="penalize", penalty=0.5).adjust(1.0, flagged) == (0.5, False)
    assert MonitorSet(action="drop").adjust(1.0, flagged) == (1.0, True)
    assert MonitorSet(action="drop").adjust(1.0, []) == (1.0, False)


def test_no_audit_path_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ms = MonitorSet()
    ms.review(0, "induction", "solve", ["ignore previous instructions"])
    assert ms.counts["prompt_injection"] == 1
    assert list(tmp_path.iterdir()) == []
