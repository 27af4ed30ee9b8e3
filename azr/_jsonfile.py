"""Read the JSON files of model and tokenizer directories (config.json,
tokenizer.json, tokenizer_config.json, vocab.json, ...) so that whatever is
wrong with one raises `azr.FormatError` naming the file: bytes that are not
UTF-8, malformed or too deeply nested JSON, integers with more digits than
Python converts (``sys.get_int_max_str_digits()``, 4300 by default) and
strings holding a lone UTF-16 surrogate (``"\ud800"``, which is no
character: serde_json, and so Hugging Face `tokenizers`, refuses it), for
both of which the error names the field as well.
"""
from __future__ import annotations

import json
import os
import re
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


def _find(obj: Any, pred) -> str | None:
    """The JSON path of the first node (breadth-first, no recursion) for which
    pred(node) holds, or of the first dict key for which it holds; None if
    there is none."""
    queue: list[tuple[Any, str]] = [(obj, "")]
    while queue:
        nxt: list[tuple[Any, str]] = []
        for node, path in queue:
            if pred(node):
                return path or "the top level"
            if isinstance(node, dict):
                for k, v in node.items():
                    if pred(k):
                        return f"a key of {path or 'the top level'}"
                    nxt.append((v, _child(path, k)))
            elif isinstance(node, list):
                nxt.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        queue = nxt
    return None


# A \u escape of a UTF-16 surrogate: decoded alone (no pair), it is no character.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate(x: Any) -> bool:
    if not isinstance(x, str) or x.isascii():
        return False
    try:
        x.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _child(path: str, key: str) -> str:
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    shown = json.dumps(key, ensure_ascii=False).encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{path}[{shown}]"


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
        obj = json.loads(text)
    except json.JSONDecodeError as e:
        raise FormatError(f"{path}: not valid JSON ({e}){hint}") from None
    except RecursionError:
        raise FormatError(f"{path}: not valid JSON (nested too deeply){hint}") from None
    except ValueError:
        obj = _TooManyDigits  # an integer with too many digits: found below
    if obj is not _TooManyDigits:
        if _SURROGATE_ESCAPE.search(text):
            where = _find(obj, _lone_surrogate)
            if where:
                raise FormatError(f"{path}: {where} holds a lone UTF-16 surrogate (a \\u escape in "
                                  "D800..DFFF that is not half of a pair): not a character")
        return obj
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
    where = _find(obj, lambda node: node is found[0]) or "a field"
    raise FormatError(f"{path}: {where} is an integer of {found[0].digits} digits, "
                      f"more than the {limit} Python converts")
