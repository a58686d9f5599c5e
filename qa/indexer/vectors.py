"""Write passage vectors to ``dense/vectors.npy`` as they are embedded, never all in memory."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

_HEADER_BYTES = 128  # room for any shape; the npy format allows padding with spaces


class VectorWriter:
    """Appends rows of ``dim`` values (stored as ``dtype``) to a ``.npy`` file whose header is
    rewritten with the final row count on :meth:`close`."""

    def __init__(self, path: Path, dim: int, dtype=np.float16):
        self.path = path
        self.dim = dim
        self.dtype = np.dtype(dtype)
        self.rows = 0
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "wb")
        self._file.write(_header(self.dtype, (0, dim)))

    def add(self, rows: np.ndarray) -> None:
        if rows.ndim != 2 or rows.shape[1] != self.dim:
            raise ValueError(f"expected rows of {self.dim} values, got shape {rows.shape}")
        self._file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def close(self) -> None:
        self._file.seek(0)
        self._file.write(_header(self.dtype, (self.rows, self.dim)))
        self._file.close()


def _header(dtype: np.dtype, shape: tuple[int, int]) -> bytes:
    text = "{'descr': %r, 'fortran_order': False, 'shape': %r, }" % (np.lib.format.dtype_to_descr(dtype), shape)
    body = text.ljust(_HEADER_BYTES - 10 - 1) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")
