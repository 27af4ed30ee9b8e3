"""A small pure-Python safetensors writer (and header reader).

The `safetensors` package is a test dependency only; azr writes the format
itself: an 8-byte little-endian header length, a JSON header padded with
spaces to a multiple of 8 bytes, then the raw little-endian tensor bytes in
the order the header lists them.

`SafetensorsWriter` streams: the caller declares every tensor's name, dtype
and shape up front (so the header can be written first), then hands over the
arrays one by one in the same order. Only one tensor is in memory at a time,
which keeps converting a large GGUF cheap.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterable, Mapping

import numpy as np

from ._native import _core

__all__ = ["TensorSpec", "SafetensorsWriter", "save_file", "read_header"]

_DTYPES: dict[str, tuple[str, int]] = {
    # numpy dtype str -> (safetensors dtype, bytes)
    "float32": ("F32", 4),
    "float16": ("F16", 2),
    "float64": ("F64", 8),
    "int64": ("I64", 8),
    "int32": ("I32", 4),
    "int16": ("I16", 2),
    "int8": ("I8", 1),
    "uint8": ("U8", 1),
    "bool": ("BOOL", 1),
}


@dataclass(frozen=True)
class TensorSpec:
    """One tensor to be written: its name, NumPy dtype name and shape."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= int(d)
        return n * _DTYPES[self.dtype][1]


class SafetensorsWriter:
    """Write a .safetensors file tensor by tensor.

    >>> specs = [TensorSpec("a", "float32", (2, 3))]
    >>> with SafetensorsWriter(path, specs) as w:          # doctest: +SKIP
    ...     w.write("a", np.zeros((2, 3), np.float32))

    Raises ValueError on an unknown dtype, a duplicate name, or when a
    written array's name, dtype or shape differs from its declaration or
    comes out of order. Closing before every tensor was written raises too
    (the file would be incomplete).
    """

    def __init__(self, path: str | Path, specs: Iterable[TensorSpec],
                 metadata: Mapping[str, str] | None = None) -> None:
        self._specs = list(specs)
        header: dict[str, object] = {}
        if metadata:
            header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
        offset = 0
        for s in self._specs:
            if s.dtype not in _DTYPES:
                raise ValueError(f"safetensors: tensor {s.name!r} has unsupported dtype {s.dtype!r}; "
                                 f"supported: {sorted(_DTYPES)}")
            if s.name in header or s.name == "__metadata__":
                raise ValueError(f"safetensors: duplicate tensor name {s.name!r}")
            if any(int(d) < 0 for d in s.shape):
                raise ValueError(f"safetensors: tensor {s.name!r} has a negative dimension {s.shape}")
            header[s.name] = {"dtype": _DTYPES[s.dtype][0], "shape": [int(d) for d in s.shape],
                              "data_offsets": [offset, offset + s.nbytes]}
            offset += s.nbytes
        blob = json.dumps(header, separators=(",", ":")).encode("utf-8")
        blob += b" " * (-len(blob) % 8)
        self._f: BinaryIO | None = open(path, "wb")
        self._f.write(struct.pack("<Q", len(blob)))
        self._f.write(blob)
        self._next = 0

    def write(self, name: str, array: np.ndarray) -> None:
        """Append the next declared tensor's data."""
        if self._f is None:
            raise ValueError("safetensors: writer is closed")
        if self._next >= len(self._specs):
            raise ValueError(f"safetensors: tensor {name!r} was not declared")
        s = self._specs[self._next]
        if name != s.name:
            raise ValueError(f"safetensors: expected tensor {s.name!r} next, got {name!r}")
        a = np.asarray(array)
        if a.dtype.name != s.dtype or tuple(a.shape) != tuple(s.shape):
            raise ValueError(f"safetensors: tensor {name!r} is {a.dtype.name}{tuple(a.shape)}, "
                             f"declared {s.dtype}{tuple(s.shape)}")
        a = np.ascontiguousarray(a)
        if a.dtype.byteorder == ">":
            a = a.byteswap().view(a.dtype.newbyteorder("<"))
        self._f.write(memoryview(a).cast("B"))
        self._next += 1

    def close(self) -> None:
        if self._f is None:
            return
        f, self._f = self._f, None
        f.close()
        if self._next != len(self._specs):
            missing = [s.name for s in self._specs[self._next:]]
            raise ValueError(f"safetensors: closed before writing {len(missing)} tensors "
                             f"(first: {missing[0]!r}); the file is incomplete")

    def __enter__(self) -> "SafetensorsWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self._f is not None:
            self._f.close()
            self._f = None
            return
        self.close()


def save_file(tensors: Mapping[str, np.ndarray], path: str | Path,
              metadata: Mapping[str, str] | None = None) -> None:
    """Write a dict of NumPy arrays to `path` (like safetensors.numpy.save_file)."""
    arrays = {k: np.asarray(v) for k, v in tensors.items()}
    specs = [TensorSpec(k, a.dtype.name, tuple(a.shape)) for k, a in arrays.items()]
    with SafetensorsWriter(path, specs, metadata) as w:
        for k, a in arrays.items():
            w.write(k, a)


def read_header(path: str | Path) -> dict:
    """The JSON header of a .safetensors file (not validated further: the C
    reader does that). Raises azr.FormatError (a ValueError) naming the file
    if it is too short, truncated, or its header is not a UTF-8 JSON object."""
    FormatError = _core.FormatError
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise FormatError(f"{path}: not a safetensors file (shorter than 8 bytes)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise FormatError(f"{path}: safetensors header length {n} is implausible")
        blob = f.read(n)
        if len(blob) != n:
            raise FormatError(f"{path}: truncated safetensors header")
    try:
        header = json.loads(blob)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, a 5000-digit number
        raise FormatError(f"{path}: the safetensors header is not valid JSON ({e})") from None
    if not isinstance(header, dict):
        raise FormatError(f"{path}: the safetensors header is not a JSON object")
    return header
