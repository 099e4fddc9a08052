"""The IDX format, read and checked: a header of dtype and shape, then the values, gzip or raw."""

from __future__ import annotations

import hashlib
import io
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class IdxError(ValueError):
    """An IDX file is missing, malformed, or not the file it claims to be."""


# Read in pieces, so that a header declaring a huge shape costs no more memory than
# the file really holds.
_CHUNK = 1 << 20


# NumPy's limit on the number of dimensions of an array, for every NumPy version.
MAX_IDX_DIMS = 32


class _Inflater:
    """The decompressed bytes of a whole gzip file, read like a stream.

    Each ``read`` is a few calls into zlib, which run without the interpreter lock: a
    file decoded in a thread (the command line's, while it imports JAX) takes no
    longer than alone, where ``gzip.GzipFile``'s Python loop over 8 KB pieces would
    wait for the lock at every piece. The compressed bytes go in 256 KB at a time.
    Checks what ``GzipFile`` checks: each member's CRC-32 and size, a stream cut
    short, and trailing bytes that are neither zeros nor another member.
    """

    _IN = 1 << 18

    def __init__(self, compressed: bytes):
        self._data = memoryview(compressed)
        self._offset = 0  # of the next compressed bytes to feed
        self._pending = b""  # fed, not yet consumed
        self._inflate = zlib.decompressobj(wbits=31)  # gzip framing

    def read(self, size: int) -> bytes:
        while True:
            if not self._pending and self._offset < len(self._data):
                self._pending = self._data[self._offset : self._offset + self._IN]
                self._offset += len(self._pending)
            out = self._inflate.decompress(self._pending, size)
            # At a member's end what is left is in unused_data (and may be in the tail too).
            self._pending = b"" if self._inflate.eof else self._inflate.unconsumed_tail
            if out:
                return out
            if not self._inflate.eof:
                if self._pending or self._offset < len(self._data):
                    continue
                raise EOFError("compressed file ended before the end-of-stream marker was reached")
            rest = bytes(self._inflate.unused_data) + bytes(self._data[self._offset :])
            rest = rest.lstrip(b"\0")  # gzip allows zero padding after a member
            if not rest:
                return b""
            self._data, self._offset, self._pending = memoryview(rest), 0, b""
            self._inflate = zlib.decompressobj(wbits=31)


def _read_up_to(stream: BinaryIO, size: int) -> bytes:
    """Reads ``size`` bytes, or fewer if the stream ends first."""
    chunks = []
    while size > 0:
        chunk = stream.read(min(size, _CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _parse_stream(
    stream: BinaryIO, name: str, expected_shape: tuple[int, ...] | None = None
) -> tuple[np.ndarray, bytes]:
    """Reads one IDX file from ``stream``: its array and its bytes, or an ``IdxError``.

    The header is checked before the body is read, so a file of the wrong kind fails
    after four bytes, whatever its size.
    """
    head = _read_up_to(stream, 4)
    if len(head) < 4:
        raise IdxError(f"{name}: {len(head)} bytes is too short for an IDX header")
    if head[0] != 0 or head[1] != 0:
        raise IdxError(f"{name}: bad magic number 0x{head.hex()} (an IDX file starts with two zero bytes)")
    type_code, ndim = head[2], head[3]
    if type_code not in IDX_DTYPES:
        raise IdxError(f"{name}: unknown IDX element type 0x{type_code:02x}")
    if ndim == 0:
        raise IdxError(f"{name}: IDX header declares zero dimensions")
    if ndim > MAX_IDX_DIMS:
        raise IdxError(f"{name}: IDX header declares {ndim} dimensions, more than {MAX_IDX_DIMS}")
    dims = _read_up_to(stream, 4 * ndim)
    header = 4 + 4 * ndim
    if len(dims) < 4 * ndim:
        raise IdxError(f"{name}: truncated header ({4 + len(dims)} bytes, {ndim} dimensions need {header})")
    shape = tuple(int(d) for d in np.frombuffer(dims, ">u4"))
    if expected_shape is not None and shape != tuple(expected_shape):
        raise IdxError(f"{name}: shape {shape}, expected {tuple(expected_shape)}")
    dtype = IDX_DTYPES[type_code]
    size = math.prod(shape) * dtype.itemsize
    body = _read_up_to(stream, size)
    if len(body) < size:
        raise IdxError(
            f"{name}: truncated: header declares shape {shape} ({header + size} bytes), "
            f"file has {header + len(body)}"
        )
    if stream.read(1):
        raise IdxError(
            f"{name}: has trailing bytes: header declares shape {shape} ({header + size} bytes), "
            "file has more"
        )
    try:
        array = np.frombuffer(body, dtype).reshape(shape)
    except ValueError as e:  # an empty shape whose other dimensions overflow NumPy's sizes
        raise IdxError(f"{name}: shape {shape} cannot be an array ({e})") from None
    return array.astype(dtype.newbyteorder("=")), head + dims + body


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decodes the bytes of an IDX file into an array of its declared shape.

    Raises:
      IdxError: naming ``name``, for a bad magic number, an unknown element type, a
        zero or too large dimension count, or a length that does not match the header.
    """
    return _parse_stream(io.BytesIO(data), name)[0]


def read_idx(
    path: str | os.PathLike, expected_shape: tuple[int, ...] | None = None, sha256: str | None = None
) -> np.ndarray:
    """Reads an IDX file, gzip-compressed or raw.

    The whole file is checked before anything is returned: a file that is not an IDX
    file, is cut short or has bytes to spare, or whose gzip stream is corrupt, raises
    ``IdxError`` and returns no data. Memory use is bounded by the file's content,
    whatever its header declares.

    Args:
      path: the file.
      expected_shape: if given, the shape the file must declare.
      sha256: if given, the SHA-256 the decompressed bytes must have.

    Returns:
      The array, in native byte order.

    Raises:
      IdxError: naming the file and the problem; the only error this raises.
    """
    array, data = read_idx_and_bytes(Path(path), expected_shape)
    if sha256 is not None and hashlib.sha256(data).hexdigest() != sha256:
        raise IdxError(f"{path}: content differs from the canonical MNIST file (SHA-256 mismatch)")
    return array


def read_idx_and_bytes(path: Path, expected_shape: tuple[int, ...] | None) -> tuple[np.ndarray, bytes]:
    """:func:`read_idx` without the hash check: the array and the decompressed bytes."""
    try:
        with open(path, "rb") as f:
            if f.peek(2)[:2] != b"\x1f\x8b":
                return _parse_stream(f, str(path), expected_shape)
            try:
                return _parse_stream(_Inflater(f.read()), str(path), expected_shape)
            except (OSError, EOFError, zlib.error) as e:
                raise IdxError(f"{path}: corrupt gzip stream ({e})") from None
    except FileNotFoundError:
        raise IdxError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise IdxError(f"{path}: is a directory, not an IDX file") from None
    except OSError as e:
        raise IdxError(f"{path}: cannot be read ({e.strerror or e})") from None
