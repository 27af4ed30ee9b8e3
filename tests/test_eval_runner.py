"""The runner end to end, driven by a fake model with the documented generate() signature."""
from __future__ import annotations

import json
from itertools import combinations

import pytest
from eval_support import FakeModel, ReferenceExecutor

import azr
from azr.evaluation import EvalConfig, cli_main, evaluate, load_task


@pytest.fixture(scope="module")
def bench(shared_data):
    return shared_data / "benchmarks"


@pytest.fixture(scope="module")
def ref_executor():
    with ReferenceExecutor(workers=2, timeout=10.0) as ex:
        yield ex


def _gold_model_class(problems, loaded: list):
    """A stand-in for azr.Model whose from_pretrained records the path and
    returns a FakeModel answering each GSM8K problem with its gold answer."""
    class FakeModelClass:
        @staticmethod
        def from_pretrained(path):
            loaded.append(path)
            return FakeModel(_gold_by_prompt(problems, lambda p, j: f"The answer is {p.answer}."))
    return FakeModelClass


def _gold_by_prompt(problems, render):
    """answer_for(prompt) that finds the problem whose text is in the prompt."""
    def answer_for(prompt, j):
        for p in problems:
            key = p.meta.get("code", p.question) if p.task.startswith("cruxeval") else p.question.strip()
            if p.task.startswith("cruxeval"):
                if key in prompt and (p.meta["input"] in prompt if p.task == "cruxeval-o" else p.meta["output"] in prompt):
                    return render(p, j)
            elif key[:200] in prompt:
                return render(p, j)
        raise AssertionError("prompt matches no problem: " + prompt[:200])
    return answer_for


class ChatTok:
    chat_template = "{{ messages }}"

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        assert not tokenize and add_generation_prompt
        return "<|user|>" + messages[0]["content"] + "<|assistant|>"


def test_cruxeval_end_to_end_writes_results_and_samples(bench, ref_executor, tmp_path):
    probs = {t: load_task(t, bench, limit=5) for t in ("cruxeval-o", "cruxeval-i")}
    allp = probs["cruxeval-o"] + probs["cruxeval-i"]
    model = FakeModel(_gold_by_prompt(allp, lambda p, j: f"Let me think.</think> <answer>{p.answer}"))
    res = evaluate(model, "cruxeval-i,cruxeval-o", executor=ref_executor, data_dir=str(bench), limit=5,
                   out_dir=str(tmp_path), prompt_style="azr", batch_size=2, progress=False)
    assert res.tasks["cruxeval-o"].scores["pass@1"] == 1.0
    assert res.tasks["cruxeval-i"].scores["pass@1"] == 1.0
    assert res.metrics() == {"eval/cruxeval-i/pass@1": 1.0, "eval/cruxeval-o/pass@1": 1.0}
    assert res.scores == {"cruxeval-i": {"pass@1": 1.0}, "cruxeval-o": {"pass@1": 1.0}}
    # greedy decoding, the azr template and its stop string, batches of 2
    call = model.calls[0]
    assert call["top_k"] == 1 and call["n"] == 1 and call["stop"] == ["</answer>"]
    assert call["prompts"][0].endswith("Assistant: <think>") and "A conversation between User" in call["prompts"][0]
    assert [len(c["prompts"]) for c in model.calls] == [2, 2, 1, 2, 2, 1]

    data = json.loads((tmp_path / "results.json").read_text())
    assert data["scores"]["cruxeval-o"]["pass@1"] == 1.0
    assert data["config"]["limit"] == 5 and data["config"]["prompt_style_used"] == "azr"
    assert data["tasks"]["cruxeval-i"]["n_problems"] == 5
    lines = [json.loads(x) for x in (tmp_path / "samples" / "cruxeval-o.jsonl").read_text().splitlines()]
    assert len(lines) == 5
    for rec, p in zip(lines, probs["cruxeval-o"]):
        assert rec["id"] == p.id and rec["extracted"] == p.answer and rec["correct"] is True
        assert {"prompt", "completion", "extracted", "status", "message", "gold"} <= set(rec)
    assert "cruxeval-o" in res.table() and "100.00" in res.table()


def test_cruxeval_base_style_few_shot(bench, ref_executor):
    po = load_task("cruxeval-o", bench, limit=3)
    pi = load_task("cruxeval-i", bench, limit=3)
    # the base prompt ends inside "[ANSWER]assert f(": the model writes the rest
    mo = FakeModel(_gold_by_prompt(po, lambda p, j: f" {p.answer}[/ANSWER]"))
    mi = FakeModel(_gold_by_prompt(pi, lambda p, j: f"{p.answer}) == {p.meta['output']}"))
    ro = evaluate(mo, ["cruxeval-o"], executor=ref_executor, data_dir=bench, limit=3, prompt_style="base",
                  few_shot=2, progress=False)
    ri = evaluate(mi, ["cruxeval-i"], executor=ref_executor, data_dir=bench, limit=3, prompt_style="base",
                  few_shot=2, progress=False)
    assert ro.tasks["cruxeval-o"].scores["pass@1"] == 1.0
    assert ri.tasks["cruxeval-i"].scores["pass@1"] == 1.0
    assert mo.calls[0]["prompts"][0].count("[ANSWER]") == 3  # two shots + the question


def test_math_pass_at_k_with_n_samples(bench):
    probs = load_task("gsm8k", bench, limit=6) + load_task("math500", bench, limit=6)
    n = 4
    correct_count = {p.id: i % (n + 1) for i, p in enumerate(probs)}  # 0..4 correct samples

    def render(p, j):
        if j < correct_count[p.id]:
            return f"Reasoning... so the answer is \\boxed{{{p.answer}}}."
        return "Reasoning... so the answer is \\boxed{123456789}."

    model = FakeModel(_gold_by_prompt(probs, render))
    res = evaluate(model, ["gsm8k", "math500"], data_dir=bench, limit=6, n_samples=n, pass_k=(1, 2, 4),
                   temperature=0.8, prompt_style="chat", tokenizer=ChatTok(), progress=False)
    assert model.calls[0]["top_k"] == 0 and model.calls[0]["temperature"] == 0.8 and model.calls[0]["n"] == n
    assert model.calls[0]["prompts"][0].startswith("<|user|>") and "\\boxed{}" in model.calls[0]["prompts"][0]

    def brute(c, k):  # fraction of k-subsets with a correct sample
        subs = list(combinations(range(n), k))
        return sum(any(i < c for i in s) for s in subs) / len(subs)

    for task in ("gsm8k", "math500"):
        ps = [p for p in probs if p.task == task]
        for k in (1, 2, 4):
            expected = sum(brute(correct_count[p.id], k) for p in ps) / len(ps)
            assert res.tasks[task].scores[f"pass@{k}"] == pytest.approx(expected)


def test_humaneval_plus_end_to_end(bench, ref_executor):
    probs = load_task("humaneval+", bench, limit=3)

    def render(p, j):
        if j == 0:
            return f"Here it is:\n```python\n{p.meta['reference']}\n```"
        return "```python\ndef nothing():\n    pass\n```"

    model = FakeModel(_gold_by_prompt(probs, render))
    res = evaluate(model, ["humaneval+"], executor=ref_executor, data_dir=bench, limit=3, n_samples=2,
                   pass_k=(1, 2), temperature=1.0, prompt_style="chat", tokenizer=ChatTok(), progress=False)
    s = res.tasks["humaneval+"].scores
    assert s == {"pass@1": 0.5, "pass@2": 1.0, "base_pass@1": 0.5, "base_pass@2": 1.0}


def test_auto_style_and_config_validation(bench):
    probs = load_task("aime24", bench, limit=2)
    model = FakeModel(_gold_by_prompt(probs, lambda p, j: f"<answer>{p.answer}</answer>"), tokenizer=ChatTok())
    res = evaluate(model, ["aime24"], data_dir=bench, limit=2, progress=False)
    assert res.config["prompt_style_used"] == "chat"  # the model's tokenizer has a chat template
    assert res.tasks["aime24"].scores["pass@1"] == 1.0
    with pytest.raises(ValueError, match="prompt_style"):
        evaluate(model, ["aime24"], data_dir=bench, prompt_style="fancy")
    with pytest.raises(TypeError, match="unknown setting 'limits'"):
        evaluate(model, ["aime24"], data_dir=bench, limits=3)
    with pytest.raises(ValueError, match="unknown task"):
        evaluate(model, ["aime2026"], data_dir=bench)
    with pytest.raises(ValueError, match="n_samples"):
        evaluate(model, ["aime24"], config=EvalConfig(n_samples=0), data_dir=bench)


def test_hostile_math_completions_do_not_affect_the_evaluator(bench, tmp_path):
    marker = tmp_path / "pwned"
    probs = load_task("amc23", bench, limit=3)
    evil = [
        "x" * 200_000 + " \\boxed{" + "{" * 5000,
        f"\\boxed{{__import__('os').system('touch {marker}')}}",
        "<answer>" * 3000,
    ]
    model = FakeModel(lambda prompt, j: evil[j])
    res = evaluate(model, ["amc23"], data_dir=bench, limit=3, n_samples=3, prompt_style="azr", progress=False,
                   math_timeout=2.0)
    assert res.tasks["amc23"].scores["pass@1"] == 0.0
    assert not marker.exists()
    assert len(probs) == 3


def test_cli_main(bench, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("AZR_DATA_DIR", raising=False)
    monkeypatch.setenv("AZR_CACHE_DIR", str(tmp_path / "cache"))  # empty cache, and no network in tests:
    monkeypatch.setenv("AZR_OFFLINE", "1")                         # the download is refused, naming the ways out
    assert cli_main(["--model", "x", "--tasks", "gsm8k"]) == 2
    err = capsys.readouterr().err
    assert "AZR_DATA_DIR" in err and "--data-dir" in err and "gsm8k/test.jsonl" in err
    assert cli_main(["--model", "x", "--tasks", "gsm8k,nope", "--data-dir", str(bench)]) == 2
    assert "unknown task 'nope'" in capsys.readouterr().err
    assert cli_main(["--model", "x", "--tasks", "livecodebench", "--data-dir", str(bench)]) == 2
    assert "not available offline" in capsys.readouterr().err
    assert cli_main(["--model", "x", "--tasks", "gsm8k", "--data-dir", str(tmp_path)]) == 2
    assert "gsm8k/test.jsonl" in capsys.readouterr().err

    probs = load_task("gsm8k", bench, limit=4)
    loaded = []
    monkeypatch.setattr(azr, "Model", _gold_model_class(probs, loaded), raising=False)
    out = tmp_path / "res"
    rc = cli_main(["--model", "my-model", "--tasks", "gsm8k", "--data-dir", str(bench), "--limit", "4",
                   "--out", str(out), "--no-progress", "--prompt-style", "base", "--few-shot", "2"])
    assert rc == 0 and loaded == ["my-model"]
    printed = capsys.readouterr().out
    assert "gsm8k" in printed and "100.00" in printed
    data = json.loads((out / "results.json").read_text())
    assert data["model"] == "my-model" and data["scores"]["gsm8k"]["pass@1"] == 1.0
    assert data["config"]["few_shot"] == 2
    assert len((out / "samples" / "gsm8k.jsonl").read_text().splitlines()) == 4


class ScriptedAnswers:
    """The real rollout engine generates (a story model's text), then each
    completion's text is replaced by the next scripted answer: the runner
    calls generate with its problems in order, task after task."""

    def __init__(self, model, answers):
        self.model, self.answers = model, list(answers)
        self.tokenizer = model.tokenizer
        self.engine_tokens = 0

    def generate(self, prompts, **kw):
        out = self.model.generate(prompts, **kw)
        for row in out:
            for c in row:
                self.engine_tokens += len(c.token_ids)
                c.text = self.answers.pop(0)
        return out


REAL_TASKS = ["cruxeval-o", "cruxeval-i", "humaneval+", "mbpp+", "gsm8k", "math500", "aime24"]


def _scripted(task, probs, gold):
    """A completion per problem (azr prompt style: the model writes after "<think>", up to the stop
    string "</answer>"): the gold answer, or a wrong one that runs and parses like an answer."""
    out = []
    for i, p in enumerate(probs):
        other = probs[(i + 1) % len(probs)]
        if task == "cruxeval-o":
            ans = p.answer if gold else other.answer
            assert gold or other.answer != p.answer
            out.append(f"I ran it.</think> <answer>{ans}")
        elif task == "cruxeval-i":
            ans = p.answer if gold else other.answer
            assert gold or other.meta["output"] != p.meta["output"]
            out.append(f"I ran it.</think> <answer>{ans}")
        elif task in ("humaneval+", "mbpp+"):
            entry = p.meta["entry_point"]
            body = p.meta["reference"] if gold else f"def {entry}(*args, **kwargs):\n    return None\n"
            out.append(f"Easy.</think> <answer>```python\n{body}\n```")
        else:
            ans = p.answer if gold else "123456789"
            assert gold or ans != p.answer
            out.append(f"So the answer is \\boxed{{{ans}}}.</think> <answer>{ans}")
    return out


def test_real_engine_and_sandbox_score_gold_1_and_wrong_0(shared_data, tmp_path):
    """Two problems per task through the real rollout engine (TinyStories-656K, whose text is then
    replaced by scripted answers), the real sandbox (azr.Executor) and the real math grader: gold
    answers score 1 on every task and wrong ones 0, and every sample is written out and judged."""
    model = azr.Model.from_pretrained(str(shared_data / "models" / "tinystories-656k"))
    bench = shared_data / "benchmarks"
    probs = {t: load_task(t, bench, limit=2) for t in REAL_TASKS}
    for gold, want in ((True, 1.0), (False, 0.0)):
        scripted = ScriptedAnswers(model, [a for t in REAL_TASKS for a in _scripted(t, probs[t], gold)])
        out = tmp_path / ("gold" if gold else "wrong")
        res = evaluate(scripted, REAL_TASKS, data_dir=bench, limit=2, max_new_tokens=8, batch_size=2,
                       prompt_style="azr", out_dir=str(out), progress=False)
        assert scripted.answers == [] and scripted.engine_tokens > 0
        for t in REAL_TASKS:
            r = res.tasks[t]
            assert r.n_problems == 2 and r.generated_tokens > 0
            assert r.scores["pass@1"] == want, (t, gold, r.scores, r.statuses)
            if t in ("humaneval+", "mbpp+"):
                assert r.scores["base_pass@1"] == want, (t, gold, r.scores)
            lines = [json.loads(x) for x in (out / "samples" / (t.replace("+", "_plus") + ".jsonl"))
                     .read_text().splitlines()]
            assert [x["id"] for x in lines] == [p.id for p in probs[t]]
            assert all(x["correct"] is gold for x in lines), (t, lines)
            if gold or t.startswith("cruxeval-o"):
                assert all(x["status"] == "ok" for x in lines), (t, [x["message"] for x in lines])


class CharTok:
    """Encodes text as code points, with one special token that must not be split."""

    chat_template = "x"
    SPECIAL = "<|im_start|>"

    def __init__(self):
        self.allow_special_seen = []

    def encode(self, text, add_special_tokens=False, allow_special=False):
        self.allow_special_seen.append(allow_special)
        ids, i = [], 0
        while i < len(text):
            if allow_special and text.startswith(self.SPECIAL, i):
                ids.append(0x110000)
                i += len(self.SPECIAL)
            else:
                ids.append(ord(text[i]))
                i += 1
        return ids

    def decode(self, ids, skip_special_tokens=False):
        return "".join(self.SPECIAL if i == 0x110000 else chr(i) for i in ids)

    def apply_chat_template(self, messages, add_generation_prompt=True, tokenize=False):
        return self.SPECIAL + "user\n" + messages[0]["content"] + "\n" + self.SPECIAL + "assistant\n"


def test_prompts_are_encoded_with_special_tokens_and_completions_decoded(bench):
    """The runner encodes chat prompts itself (allow_special=True) and decodes token ids when the
    engine returns no text (a model without an attached tokenizer)."""
    probs = load_task("aime25", bench, limit=2)
    tok = CharTok()
    seen = []

    def answer_for(prompt_ids, j):
        assert isinstance(prompt_ids, list) and prompt_ids[0] == 0x110000  # one special token, not 12 chars
        text = tok.decode(prompt_ids)
        seen.append(text)
        p = next(p for p in probs if p.question.strip()[:100] in text)
        return "so \\boxed{" + p.answer + "} and more"

    class IdsModel(FakeModel):
        def generate(self, prompts, **kw):
            out = super().generate(prompts, **kw)
            for row in out:
                for c in row:
                    c.token_ids, c.text = tok.encode(c.text), ""  # the engine had no tokenizer: no text
            return out

    model = IdsModel(answer_for, tokenizer=None)
    res = evaluate(model, ["aime25"], data_dir=bench, limit=2, tokenizer=tok, prompt_style="chat", progress=False)
    assert res.tasks["aime25"].scores["pass@1"] == 1.0
    assert tok.allow_special_seen and all(tok.allow_special_seen[:2])
    assert len(seen) == 2


# ----------------------------------------------------------------------------- interrupted runs keep their work
class Interrupting(FakeModel):
    """Ctrl-C during generate call number ``at`` (1-based), after ``at - 1`` calls went through."""

    def __init__(self, answer_for, at):
        super().__init__(answer_for)
        self.at = at

    def generate(self, prompts, **kw):
        if len(self.calls) + 1 == self.at:
            self.calls.append({"interrupted": True})
            raise KeyboardInterrupt
        return super().generate(prompts, **kw)


def _records(path):
    return sorted((r["id"], r["completion"], r["correct"]) for r in map(json.loads, path.read_text().splitlines()))


def test_an_interrupted_eval_keeps_its_work_and_a_rerun_skips_it(bench, tmp_path):
    tasks = ["gsm8k", "math500"]
    probs = {t: load_task(t, bench, limit=4) for t in tasks}
    every = probs["gsm8k"] + probs["math500"]
    # problems 0 and 2 of each task answered right, 1 and 3 wrong
    def render(p, j):
        return f"The answer is \\boxed{{{p.answer if probs[p.task].index(p) % 2 == 0 else 'wrong'}}}."

    answer = _gold_by_prompt(every, render)
    kw = dict(data_dir=bench, limit=4, batch_size=2, prompt_style="base", progress=False, model_name="fake")
    fresh = evaluate(FakeModel(answer), tasks, out_dir=str(tmp_path / "fresh"), **kw)

    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):  # gsm8k's two batches, math500's first, then Ctrl-C
        evaluate(Interrupting(answer, at=4), tasks, out_dir=str(out), **kw)
    data = json.loads((out / "results.json").read_text())
    assert data["complete"] is False and list(data["scores"]) == ["gsm8k"]  # written as the task finished
    assert data["scores"]["gsm8k"] == fresh.scores["gsm8k"]
    assert len((out / "samples" / "gsm8k.jsonl").read_text().splitlines()) == 4
    assert len((out / "samples" / "math500.jsonl").read_text().splitlines()) == 2  # the batch judged in time

    told, model = [], FakeModel(answer)
    res = evaluate(model, tasks, out_dir=str(out), notify=told.append, **kw)
    assert told == ["gsm8k: 4 of 4 problems already done by an earlier run, skipped (their samples are reused)",
                    "math500: 2 of 4 problems already done by an earlier run, skipped (their samples are reused)"]
    assert [len(c["prompts"]) for c in model.calls] == [2]  # only math500's last two problems
    assert res.scores == fresh.scores and res.tasks["math500"].resumed == 2
    assert json.loads((out / "results.json").read_text())["complete"] is True
    for t in tasks:
        assert _records(out / "samples" / f"{t}.jsonl") == _records(tmp_path / "fresh" / "samples" / f"{t}.jsonl")

    # a line cut by the interruption is dropped and its problem answered again
    path = out / "samples" / "math500.jsonl"
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:30])
    model = FakeModel(answer)
    assert evaluate(model, tasks, out_dir=str(out), **kw).scores == fresh.scores
    assert [len(c["prompts"]) for c in model.calls] == [1]
    assert _records(path) == _records(tmp_path / "fresh" / "samples" / "math500.jsonl")

    # other sample settings: refused, naming the difference, unless overwrite
    with pytest.raises(ValueError, match=r"holds samples of another evaluation \(temperature 0.0 there, 0.5 now\)"
                                         r".*--overwrite"):
        evaluate(FakeModel(answer), tasks, out_dir=str(out), temperature=0.5, **kw)
    model = FakeModel(answer)
    evaluate(model, tasks, out_dir=str(out), temperature=0.5, overwrite=True, **kw)
    assert sum(len(c["prompts"]) for c in model.calls) == 8
    assert json.loads((out / "results.json").read_text())["config"]["temperature"] == 0.5


def test_cli_rerun_says_what_it_skips(bench, tmp_path, monkeypatch, capsys):
    probs = load_task("gsm8k", bench, limit=3)
    loads = []
    monkeypatch.setattr(azr, "Model", _gold_model_class(probs, loads), raising=False)
    out = tmp_path / "res"
    argv = ["--model", "m", "--tasks", "gsm8k", "--data-dir", str(bench), "--limit", "3", "--out", str(out),
            "--no-progress", "--prompt-style", "base"]
    assert cli_main(argv) == 0
    capsys.readouterr()
    assert cli_main(argv) == 0
    captured = capsys.readouterr()
    assert "azr eval: gsm8k: 3 of 3 problems already done by an earlier run, skipped" in captured.err
    assert "100.00" in captured.out
    assert cli_main(argv + ["--temperature", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"azr eval: error: {out} holds samples of another evaluation (temperature 0.0 there, "
                          f"0.5 now)"), err
    assert len(loads) == 2  # refused before the model loads
    assert cli_main(argv + ["--temperature", "0.5", "--overwrite"]) == 0
    assert "already done" not in capsys.readouterr().err
