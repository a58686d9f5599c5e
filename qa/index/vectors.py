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


class VectorFile:
    """Rows of a 2-D ``.npy`` file read with plain reads, a block at a time: unlike a memory map,
    what was read does not stay in the process's resident memory. Indexing takes a slice or an
    increasing array of row numbers and returns float32."""

    def __init__(self, path: Path):
        self.path = path
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            self._offset = f.tell()
        if len(shape) != 2 or fortran:
            raise ValueError(f"{path.name} is not a 2-D C-ordered array")
        self.shape, self.dtype = shape, np.dtype(dtype)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        if isinstance(rows, slice):
            first, stop, step = rows.indices(len(self))
            if step != 1:
                raise ValueError("only contiguous slices")
            return self._read(first, max(0, stop - first))
        rows = np.asarray(rows)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        block = 100_000
        for lo in range(0, len(self), block):
            inside = (rows >= lo) & (rows < lo + block)
            if inside.any():
                out[inside] = self._read(lo, min(block, len(self) - lo))[rows[inside] - lo]
        return out

    def _read(self, first: int, count: int) -> np.ndarray:
        row_bytes = self.shape[1] * self.dtype.itemsize
        with open(self.path, "rb") as f:
            f.seek(self._offset + first * row_bytes)
            data = np.fromfile(f, dtype=self.dtype, count=count * self.shape[1])
        return data.reshape(count, self.shape[1]).astype(np.float32)
