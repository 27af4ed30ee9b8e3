"""azr.evaluation: benchmark evaluation (CRUXEval-I/O, HumanEval+, MBPP+, GSM8K, MATH-500 and the paper's math sets).

Entry points:

- ``evaluate(model, tasks, **settings) -> EvalResult``: for scripts and
  ``azr eval`` (``result.metrics()`` gives ``{"eval/<task>/pass@1": ...}``).
  Evaluation during training is ``Trainer.evaluate`` (held-out and CRUXEval
  sets asked with the run's own prompts, azr/heldout.py), not this.
- ``cli_main(argv)``: the ``azr eval`` command.
- ``load_task(task, data_dir)``: the problems of one benchmark.
- ``MathGrader`` / ``extract_answer`` / ``normalize_answer``: math answer checking.
- ``pass_at_k(n, c, k)``: the unbiased estimator.

See docs/evaluation.md for data layout, prompt styles and scoring rules.
"""
from __future__ import annotations

from .code_tasks import (build_output_code, build_program, extract_code, extract_crux_answer, judge_outputs,
                         pass_at_k)
from .datasets import (CODE_GEN_TASKS, CRUX_TASKS, MATH_TASKS, TASKS, DataNotFoundError, Problem, load_task,
                       resolve_data_dir)
from .math_grader import MathGrader, extract_answer, extract_boxed, math_equal, normalize_answer
from .prompts import AZR_TEMPLATE, PROMPT_STYLES, BuiltPrompt, build_prompt
from .runner import EvalConfig, EvalResult, TaskResult, cli_main, evaluate

__all__ = [
    "AZR_TEMPLATE", "BuiltPrompt", "CODE_GEN_TASKS", "CRUX_TASKS", "DataNotFoundError", "EvalConfig", "EvalResult",
    "MATH_TASKS", "MathGrader", "PROMPT_STYLES", "Problem", "TASKS", "TaskResult", "build_program", "build_prompt",
    "build_output_code", "cli_main", "evaluate", "extract_answer", "extract_boxed", "extract_code",
    "extract_crux_answer", "judge_outputs", "load_task", "math_equal", "normalize_answer", "pass_at_k", "resolve_data_dir",
]
