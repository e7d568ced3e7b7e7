"""The binary tensor data framing (``shared.binary_tensors``) on its own: what
``tritonclient`` writes parses, what the service writes ``tritonclient`` reads, and every
inconsistent length is a :class:`FramingError` found before anything is allocated for it.
The same cases through a real service are in ``test_services_hostile``."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from tritonclient.http import InferResult
from tritonclient.utils import deserialize_bytes_tensor, serialize_byte_tensor

from shared.binary_tensors import (
    HEADER,
    FramingError,
    bytes_elements,
    encode_array,
    encode_bytes_elements,
    fixed_size_array,
    frame,
    header_length,
    input_chunks,
    split_body,
)


def fp32_input(size: int | object, **extra: object) -> dict:
    return {"name": "input", "datatype": "FP32", "shape": [1, 2],
            "parameters": {"binary_data_size": size}, **extra}


@pytest.mark.parametrize("value", ["-1", "1.5", "", " ", "abc", "1e3", "+3", "0x10", "٣",
                                   "1_0", "99999999999999999999"])
def test_a_header_length_that_is_not_a_plain_decimal_is_refused(value: str) -> None:
    with pytest.raises(FramingError, match="non-negative decimal integer"):
        header_length(value, 10)


def test_header_length_is_absent_or_within_the_body() -> None:
    assert header_length(None, 10) is None
    assert header_length("0", 10) == 0 and header_length(" 10 ", 10) == 10
    with pytest.raises(FramingError, match="11 is past the end of the 10-byte body"):
        header_length("11", 10)


def test_split_body_cuts_at_the_header_length_without_copying_the_binary_part() -> None:
    body = b'{"a":1}' + bytes(range(5))
    text, binary = split_body(body, "7")
    assert text == b'{"a":1}' and isinstance(binary, memoryview)
    assert binary.obj is body and bytes(binary) == bytes(range(5))
    assert split_body(body, None) == (body, None)


def test_input_chunks_follow_the_inputs_order_and_skip_json_inputs() -> None:
    binary = memoryview(b"aaaabbbbbb")
    inputs = [fp32_input(4), {"name": "j", "data": [1]}, fp32_input(6)]
    chunks = input_chunks(inputs, binary)
    assert [None if c is None else bytes(c) for c in chunks] == [b"aaaa", None, b"bbbbbb"]
    assert input_chunks([{"name": "j", "data": [1]}], memoryview(b"")) == [None]
    assert input_chunks([{"name": "j", "data": [1]}], None) == [None]


@pytest.mark.parametrize(("inputs", "binary", "words"), [
    ([fp32_input(8)], None, "no Inference-Header-Content-Length"),
    ([fp32_input(8)], b"x" * 7, "only 7 bytes"),
    ([fp32_input(2**62)], b"x" * 8, "4,611,686,018,427,387,904 but only 8"),
    ([fp32_input(4)], b"x" * 8, "8 bytes of binary data after the JSON header but the "
                                "inputs' binary_data_size add up to 4"),
    ([{"name": "j", "data": [1]}], b"x", "add up to 0"),
    ([fp32_input(-1)], b"", "non-negative integer"),
    ([fp32_input(True)], b"x", "non-negative integer"),
    ([fp32_input("8")], b"x" * 8, "non-negative integer"),
    ([fp32_input(1.0)], b"x", "non-negative integer"),
    ([fp32_input(8, data=[0.0, 1.0])], b"x" * 8, "both JSON 'data'"),
    ([{"name": "input", "parameters": [1]}], b"", "'parameters' must be an object"),
])
def test_inconsistent_input_sizes_are_refused(inputs: list, binary: bytes | None,
                                              words: str) -> None:
    view = None if binary is None else memoryview(binary)
    with pytest.raises(FramingError, match=words):
        input_chunks(inputs, view)


def test_fixed_size_arrays_are_little_endian_zero_copy_views() -> None:
    values = [1.5, -2.0, 3.25, 0.0, 1e-3, 7.0]
    chunk = memoryview(struct.pack("<6f", *values))
    array = fixed_size_array(chunk, "FP32", [2, 3])
    assert array.shape == (2, 3) and array.dtype == np.dtype("<f4")
    np.testing.assert_array_equal(array.ravel(), np.float32(values))
    assert not array.flags.writeable and not array.flags.owndata
    assert encode_array(array.astype(">f4"), "FP32") == bytes(chunk)  # any order in, LE out


@pytest.mark.parametrize(("size", "shape"), [(23, [2, 3]), (25, [2, 3]), (0, [1, 1]),
                                            (24, [10**12, 224, 224, 3])])
def test_a_size_that_does_not_match_shape_times_dtype_is_refused(size: int, shape) -> None:
    with pytest.raises(FramingError, match="does not match shape"):
        fixed_size_array(memoryview(bytes(size)), "FP32", shape)


def test_bytes_elements_round_trip_with_tritonclient() -> None:
    items = [b"\xff\xd8jpeg", b"", b"\x89PNG" * 100]
    theirs = serialize_byte_tensor(np.array(items, dtype=np.object_)).item()
    assert encode_bytes_elements(items) == theirs
    assert bytes_elements(memoryview(theirs), 3) == items
    assert list(deserialize_bytes_tensor(encode_bytes_elements(items))) == items


@pytest.mark.parametrize(("data", "count", "words"), [
    (struct.pack("<I", 2**32 - 1) + b"abc", 1, "declares 4,294,967,295 bytes but only 3"),
    (struct.pack("<I", 4) + b"abc", 1, "declares 4 bytes but only 3"),
    (b"\x01\x00", 1, "ends before element 0"),
    (b"", 1, "ends before element 0"),
    (encode_bytes_elements([b"a"]), 2, "ends before element 1 of 2"),
    (encode_bytes_elements([b"a", b"b"]), 1, "5 bytes after its 1 declared elements"),
])
def test_bad_bytes_elements_are_refused(data: bytes, count: int, words: str) -> None:
    with pytest.raises(FramingError, match=words):
        bytes_elements(memoryview(data), count)


def test_a_framed_response_reads_back_in_tritonclient() -> None:
    probabilities = np.float32([[0.25, 0.75], [0.5, 0.5]])
    labels = encode_bytes_elements([b"a", b"bb"])
    header = (b'{"outputs":[{"name":"p","datatype":"FP32","shape":[2,2],"parameters":'
              b'{"binary_data_size":16}},{"name":"l","datatype":"BYTES","shape":[2],'
              b'"parameters":{"binary_data_size":%d}}]}' % len(labels))
    body, headers = frame(header, [encode_array(probabilities, "FP32"), labels])
    assert headers == {HEADER: str(len(header))}
    result = InferResult.from_response_body(body, header_length=int(headers[HEADER]))
    np.testing.assert_array_equal(result.as_numpy("p"), probabilities)
    assert list(result.as_numpy("l")) == [b"a", b"bb"]
