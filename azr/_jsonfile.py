"""Read the JSON files of model and tokenizer directories (config.json,
tokenizer.json, tokenizer_config.json, vocab.json, ...) so that whatever is
wrong with one raises `azr.FormatError` naming the file: bytes that are not
UTF-8, malformed or too deeply nested JSON, and integers with more digits
than Python converts (``sys.get_int_max_str_digits()``, 4300 by default),
for which the error names the field as well.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any

from ._native import _core

FormatError = _core.FormatError


class _TooManyDigits:
    """Stands in for an integer Python refused to convert, so the parse can
    finish and the error can say where the number is."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _field_of(obj: Any, target: _TooManyDigits) -> str:
    """The JSON path of `target` inside `obj` (breadth-first, no recursion)."""
    queue: list[tuple[Any, str]] = [(obj, "")]
    while queue:
        nxt: list[tuple[Any, str]] = []
        for node, path in queue:
            if node is target:
                return path or "the top level"
            if isinstance(node, dict):
                nxt.extend((v, _child(path, k)) for k, v in node.items())
            elif isinstance(node, list):
                nxt.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        queue = nxt
    return "a field"


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key, ensure_ascii=False)}]"


def load(path: str | os.PathLike, hint: str = "") -> Any:
    """Parse the JSON file at `path`; FormatError naming the file (and, for a
    number Python will not convert, the field) for anything malformed.
    `hint` is appended to the message of a parse error."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            text = f.read()
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not valid JSON: the file is not UTF-8 ({e})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON ({e}){hint}") from None
    except RecursionError:
        raise FormatError(f"{path}: not valid JSON (nested too deeply){hint}") from None
    except ValueError:
        pass  # an integer with too many digits: find it
    limit = sys.get_int_max_str_digits()
    found: list[_TooManyDigits] = []

    def parse_int(s: str) -> Any:
        digits = len(s) - s.startswith("-")
        if limit and digits > limit:
            found.append(_TooManyDigits(digits))
            return found[-1]
        return int(s)

    try:
        obj = json.loads(text, parse_int=parse_int)
    except (ValueError, RecursionError) as e:  # pragma: no cover - the first parse said otherwise
        raise FormatError(f"{path}: not valid JSON ({e}){hint}") from None
    if not found:  # pragma: no cover - the first parse failed for another reason
        raise FormatError(f"{path}: not valid JSON{hint}")
    raise FormatError(f"{path}: {_field_of(obj, found[0])} is an integer of {found[0].digits} digits, "
                      f"more than the {limit} Python converts")
