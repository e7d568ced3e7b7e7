"""Framing of the Open Inference Protocol's binary tensor data extension (Triton's
``binary_tensor_data``), which ``tritonclient.http`` uses by default.

A request or response body is a JSON object of ``Inference-Header-Content-Length`` bytes
followed by the binary data of each tensor whose ``parameters`` carry ``binary_data_size``,
in the order the tensors appear in the JSON. Numeric tensors are their elements in
little-endian byte order, row major, no padding; a BYTES element is a 4-byte little-endian
unsigned length followed by that many bytes. A request without the header is JSON only.

Everything here checks a declared size against the bytes really present *before* using it,
so a hostile length (a header length past the body, a ``binary_data_size`` of 2**62, a BYTES
element claiming 4 GB) is a :class:`FramingError` (400), never an allocation: the tensors
are zero-copy views of the body already read (whose size the service limits).
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Sequence

import numpy as np

HEADER = "Inference-Header-Content-Length"
SIZE = "binary_data_size"
LENGTH_PREFIX = struct.Struct("<I")
DTYPES = {
    "BOOL": "|b1", "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
"""Fixed-size datatypes of the protocol -> their little-endian numpy dtype."""
_DECIMAL = re.compile(r"[0-9]{1,19}")


class FramingError(ValueError):
    """The binary framing of a request is inconsistent (answered 400 with this message)."""


def header_length(value: str | None, body_size: int) -> int | None:
    """The ``Inference-Header-Content-Length`` header as the JSON's length in bytes, or
    ``None`` when the header is absent (the whole body is JSON)."""
    if value is None:
        return None
    text = value.strip()
    if not _DECIMAL.fullmatch(text):
        raise FramingError(f"{HEADER} must be a non-negative decimal integer (the length of "
                           f"the JSON header in bytes), got {value[:40]!r}")
    length = int(text)
    if length > body_size:
        raise FramingError(f"{HEADER} {length:,} is past the end of the {body_size:,}-byte "
                           "body")
    return length


def split_body(body: bytes, header: str | None) -> tuple[bytes, memoryview | None]:
    """``(JSON text, binary data after it)``; the binary part is ``None`` when the request
    has no ``Inference-Header-Content-Length`` (JSON only) and a view of the body if it has."""
    length = header_length(header, len(body))
    if length is None:
        return body, None
    return body[:length], memoryview(body)[length:]


def binary_size(tensor: dict, where: str) -> int | None:
    """A tensor's declared ``parameters.binary_data_size``, or ``None`` (JSON data)."""
    parameters = tensor.get("parameters", {})
    if not isinstance(parameters, dict):
        raise FramingError(f"{where} 'parameters' must be an object")
    size = parameters.get(SIZE)
    if size is None:
        return None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise FramingError(f"{where} parameters.{SIZE} must be a non-negative integer, "
                           f"got {size!r}")
    return size


def input_chunks(inputs: Sequence[dict], binary: memoryview | None, *, kind: str = "input"
                 ) -> list[memoryview | None]:
    """Each input's binary data (a view of the body), ``None`` for an input sent as JSON
    ``data``. The declared sizes must account for every byte after the JSON, exactly.
    ``kind="output"`` reads a response's outputs the same way (the load test's check)."""
    chunks: list[memoryview | None] = []
    offset = 0
    for index, tensor in enumerate(inputs):
        where = f"{kind} {tensor.get('name', index)!r}"
        size = binary_size(tensor, where)
        if size is None:
            chunks.append(None)
            continue
        if binary is None:
            raise FramingError(f"{where} declares parameters.{SIZE} but the request has no "
                               f"{HEADER} header giving the length of its JSON part")
        if "data" in tensor:
            raise FramingError(f"{where} has both JSON 'data' and parameters.{SIZE}: send "
                               "its data one way")
        remaining = len(binary) - offset
        if size > remaining:
            raise FramingError(f"{where} declares {SIZE} {size:,} but only {remaining:,} "
                               "bytes of binary data are left after the JSON header")
        chunks.append(binary[offset:offset + size])
        offset += size
    if binary is not None and offset != len(binary):
        raise FramingError(f"the body has {len(binary):,} bytes of binary data after the "
                           f"JSON header but the {kind}s' {SIZE} add up to {offset:,}")
    return chunks


def fixed_size_array(chunk: memoryview, datatype: str, shape: Sequence[int]) -> np.ndarray:
    """A numeric tensor's binary data as a read-only array of ``shape`` (zero-copy)."""
    dtype = np.dtype(DTYPES[datatype])
    needed = math.prod(shape) * dtype.itemsize
    if len(chunk) != needed:
        raise FramingError(f"{datatype} binary data of {len(chunk):,} bytes does not match "
                           f"shape {list(shape)}, which needs {needed:,} bytes")
    return np.frombuffer(chunk, dtype=dtype).reshape(shape)


def bytes_elements(chunk: memoryview, count: int) -> list[bytes]:
    """A BYTES tensor's ``count`` length-prefixed elements, each length checked against
    what is left of the tensor's data before it is read."""
    elements = []
    offset = 0
    for index in range(count):
        if len(chunk) - offset < LENGTH_PREFIX.size:
            raise FramingError(f"BYTES binary data ends before element {index} of {count} "
                               "(each element is a 4-byte little-endian length, then data)")
        (length,) = LENGTH_PREFIX.unpack_from(chunk, offset)
        offset += LENGTH_PREFIX.size
        if length > len(chunk) - offset:
            raise FramingError(f"BYTES element {index} declares {length:,} bytes but only "
                               f"{len(chunk) - offset:,} are left in its tensor")
        elements.append(bytes(chunk[offset:offset + length]))
        offset += length
    if offset != len(chunk):
        raise FramingError(f"BYTES binary data has {len(chunk) - offset:,} bytes after its "
                           f"{count} declared elements")
    return elements


def encode_bytes_elements(elements: Sequence[bytes]) -> bytes:
    """BYTES elements in the binary form: each one length-prefixed."""
    return b"".join(LENGTH_PREFIX.pack(len(e)) + e for e in elements)


def encode_array(array: np.ndarray, datatype: str) -> bytes:
    """A numeric tensor in the binary form: little-endian, row major."""
    return np.ascontiguousarray(array, dtype=DTYPES[datatype]).tobytes()


def frame(header: bytes, chunks: Sequence[bytes]) -> tuple[bytes, dict[str, str]]:
    """A response body (the JSON header, then each binary output in order) and the HTTP
    headers that say where the JSON ends."""
    return header + b"".join(chunks), {HEADER: str(len(header))}
