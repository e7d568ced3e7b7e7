"""Hostile and malformed input against one real gunicorn service (ONNX Runtime, the tiny
model): multipart uploads, raw bodies, Open Inference Protocol JSON and HTTP framing sent
over raw sockets. Each case asserts the status, the error body (``{"error": ...}`` naming
the problem, or an HTML page for a browser), and that afterwards the service is still live
and ready and answers a good image exactly as before.

The service runs with small limits so that the limit cases stay cheap: 2 MB images, 3 MB
bodies (an OIP body is limited to less, see ``InferenceEngine.max_json_bytes``), a 64 MB
decode memory budget, a queue of 32 images.
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import socket
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest
import requests
from PIL import Image
from tritonclient.http import InferResult

from shared.imaging import PreprocessSpec, decode_image, preprocess

pytestmark = pytest.mark.slow

SIZE = 32  # the tiny model's input side
MAX_IMAGE_BYTES = 2 * 2**20
MAX_BODY_BYTES = 3 * 2**20
DECODE_MEMORY_BYTES = 64 * 2**20
QUEUE_SIZE = 32
BROWSER_ACCEPT = "text/html,application/xhtml+xml,*/*;q=0.8"
PREDICT = "/predict"
INFER = "/v2/models/dr/infer"
BINARY_HEADER = "Inference-Header-Content-Length"


# ---------------------------------------------------------------------- payloads


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` over a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
            + png_chunk(b"IDAT", zlib.compress(bytes(64))) + png_chunk(b"IEND", b""))


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    Image.new(mode, size, 7 if mode in ("P", "L") else (120, 30, 60)).save(buffer, format=fmt)
    return buffer.getvalue()


def noise_png(nbytes: int) -> bytes:
    """A valid PNG of random pixels, at least ``nbytes`` long (noise does not compress)."""
    side = int((nbytes / 3) ** 0.5) + 8
    pixels = np.random.default_rng(1).integers(0, 256, (side, side, 3), np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def exif_flood_png(tags: int = 65535, size: int = 2**20) -> bytes:
    """An 8x8 PNG carrying an ``eXIf`` chunk of ``size`` bytes whose ``tags`` IFD entries each
    point at 4000 bytes: Pillow warns once per tag ("Tag data larger than file"). The issue's
    was 8 MB; 1 MB fits this service's limits and warns as often."""
    ifd = b"II*\x00" + struct.pack("<IH", 8, tags)
    ifd += b"".join(struct.pack("<HHII", tag, 7, 4000, 8) for tag in range(tags))
    png = encoded("PNG", (8, 8))
    return png[:33] + png_chunk(b"eXIf", ifd.ljust(size, b"\0")) + png[33:]


JPEG = encoded("JPEG")
PNG = encoded("PNG")
FLOATS = SIZE * SIZE * 3


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tensor(**fields: object) -> dict:
    base = {"name": "input", "datatype": "FP32", "shape": [1, SIZE, SIZE, 3],
            "data": [0.0] * FLOATS}
    return {**base, **fields}


def infer_json(**fields: object) -> bytes:
    return json.dumps({"inputs": [tensor(**fields)]}).encode()


def fp32_text(number: str) -> bytes:
    """An FP32 request whose every element is the JSON number text ``number``."""
    data = ",".join([number] * FLOATS)
    return (f'{{"inputs":[{{"name":"input","datatype":"FP32","shape":[1,{SIZE},{SIZE},3],'
            f'"data":[{data}]}}]}}').encode()


def nested(depth: int) -> list:
    value: list = [0.0]
    for _ in range(depth - 1):
        value = [value]
    return value


# ---------------------------------------------------------------------- cases


@dataclass(frozen=True)
class Case:
    """One hostile request: ``path`` with ``body`` and ``headers`` (``raw``: the whole
    request as bytes on a socket instead, ``half_close``: then shut the write side)."""

    id: str
    status: int
    words: str
    path: str = PREDICT
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "POST"
    raw: bytes | None = None
    half_close: bool = False
    html: bool = False


def upload(id: str, status: int, words: str, data: bytes, *, field_name: str = "image",
           filename: str = "x.png", **kw: object) -> Case:
    """A multipart/form-data upload built by hand (so that any part can be broken)."""
    boundary = "versusboundary"
    disposition = f'form-data; name="{field_name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    body = (f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + data + \
        f"\r\n--{boundary}--\r\n".encode()
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return Case(id, status, words, body=body, headers=headers, **kw)


def raw_body(id: str, status: int, words: str, data: bytes, content_type: str | None,
             path: str = PREDICT, **kw: object) -> Case:
    headers = {"Content-Type": content_type} if content_type else {}
    return Case(id, status, words, path=path, body=data, headers=headers, **kw)


def oip(id: str, status: int, words: str, body: bytes | dict | list, *,
        content_type: str | None = "application/json", **kw: object) -> Case:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return raw_body(id, status, words, data, content_type, path=INFER, **kw)


def prefixed(data: bytes) -> bytes:
    """One BYTES element in the binary form: 4-byte little-endian length, then the data."""
    return struct.pack("<I", len(data)) + data


def framed_request(*, datatype: str = "FP32", shape: list[int] | None = None,
                   data: bytes | None = None, size: object = None,
                   extra: dict | None = None, request: dict | None = None
                   ) -> tuple[bytes, bytes]:
    """(JSON header, binary data) of a binary-data request: one input whose
    ``binary_data_size`` is ``size`` (default: the data's length), ``request`` merged in."""
    data = bytes(FLOATS * 4) if data is None else data
    tensor = {"name": "input", "datatype": datatype, "shape": shape or [1, SIZE, SIZE, 3],
              "parameters": {"binary_data_size": len(data) if size is None else size},
              **(extra or {})}
    return json.dumps({"inputs": [tensor], **(request or {})}).encode(), data


def binary(id: str, status: int, words: str, *,
           header_length: str | Callable[[int, int], str] | None = "auto",
           content_type: str = "application/octet-stream", **request: object) -> Case:
    """A binary-data request whose ``Inference-Header-Content-Length`` is the JSON's length
    (``"auto"``), absent (``None``), a given text, or ``f(json_length, binary_length)``."""
    head, data = framed_request(**request)
    headers = {"Content-Type": content_type}
    if header_length == "auto":
        headers[BINARY_HEADER] = str(len(head))
    elif callable(header_length):
        headers[BINARY_HEADER] = header_length(len(head), len(data))
    elif header_length is not None:
        headers[BINARY_HEADER] = header_length
    return Case(id, status, words, path=INFER, body=head + data, headers=headers)


def chunked(id: str, status: int, words: str, path: str, chunks: bytes, *,
            half_close: bool = False, content_type: str = "image/png",
            accept: str = "application/json") -> Case:
    """A request with ``Transfer-Encoding: chunked`` and ``chunks`` as its (broken) body."""
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Accept: {accept}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    return Case(id, status, words, path=path, raw=head.encode() + chunks,
                half_close=half_close, html=accept != "application/json")


def short_body(id: str, path: str, content_type: str) -> Case:
    """Content-Length promises more than the client sends before it stops sending."""
    head = (f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: 5000\r\nConnection: close\r\n\r\n")
    return Case(id, 400, "ended before", path=path, raw=head.encode() + PNG[:100],
                half_close=True)


MULTIPART_CASES = [
    upload("mp-wrong-field", 400, "no file", JPEG, field_name="file"),
    upload("mp-no-filename", 400, "no file", JPEG, filename=""),
    upload("mp-empty-file", 400, "empty", b""),
    upload("mp-text", 400, "not a recognised", b"hello, I am not an image"),
    upload("mp-truncated-jpeg", 400, "truncated", JPEG[: len(JPEG) // 2]),
    upload("mp-truncated-png", 400, "truncated", noise_png(4000)[:2000]),
    upload("mp-gif", 415, "GIF", encoded("GIF")),
    upload("mp-pdf", 415, "PDF", b"%PDF-1.7\n" + bytes(200)),
    upload("mp-svg", 415, "SVG", b'<svg xmlns="http://www.w3.org/2000/svg"/>'),
    upload("mp-heic", 415, "HEIC", b"\x00\x00\x00\x18ftypheic" + bytes(100)),
    upload("mp-psd", 415, "PSD", b"8BPS" + bytes(100)),
    upload("mp-dicom", 415, "DICOM", bytes(128) + b"DICM" + bytes(100)),
    upload("mp-jpeg2000", 415, "JPEG 2000", b"\x00\x00\x00\x0cjP  \r\n\x87\n" + bytes(100)),
    upload("mp-bomb-header", 413, "pixels", png_header_only(100_000, 100_000)),
    upload("mp-zero-width", 400, "not a recognised", png_header_only(0, 16)),
    upload("mp-image-over-byte-limit", 413, "over the limit", noise_png(MAX_IMAGE_BYTES + 1)),
    upload("mp-over-decode-budget", 413, "decode budget", encoded("PNG", (3000, 3000), "P")),
    upload("mp-bad-png-crc", 400, "", PNG[:20] + b"\x00\x00\x00\x00" + PNG[24:]),
    upload("mp-jpeg-garbage", 400, "", b"\xff\xd8\xff\xe0" + bytes(range(256)) * 4),
    Case("mp-no-boundary", 400, "no file", body=b"--x\r\n\r\nabc\r\n--x--\r\n",
         headers={"Content-Type": "multipart/form-data"}),
    Case("mp-garbage-body", 400, "no file", body=b"this is not multipart at all",
         headers={"Content-Type": "multipart/form-data; boundary=zzz"}),
    Case("mp-too-many-parts", 413, "parts", body=b"".join(
        b'--b\r\nContent-Disposition: form-data; name="f%d"\r\n\r\nv\r\n' % i
        for i in range(1500)) + b"--b--\r\n",
        headers={"Content-Type": "multipart/form-data; boundary=b"}),
    Case("mp-huge-text-field", 413, "non-file field",
         body=b'--b\r\nContent-Disposition: form-data; name="note"\r\n\r\n'
         + b"v" * 600_000 + b"\r\n--b--\r\n",
         headers={"Content-Type": "multipart/form-data; boundary=b"}),
    Case("mp-urlencoded", 415, "multipart/form-data", body=b"image=abc",
         headers={"Content-Type": "application/x-www-form-urlencoded"}),
    Case("mp-browser-no-file", 400, "no file", body=b"--b\r\n\r\n--b--\r\n",
         headers={"Content-Type": "multipart/form-data; boundary=b",
                  "Accept": BROWSER_ACCEPT}, html=True),
]

RAW_CASES = [
    raw_body("raw-empty", 400, "empty", b"", "image/png"),
    raw_body("raw-json-type", 415, "Content-Type", b"{}", "application/json"),
    raw_body("raw-no-type", 415, "Content-Type", b"abc", None),
    raw_body("raw-text-plain", 415, "Content-Type", b"abc", "text/plain"),
    raw_body("raw-random-octets", 400, "not a recognised", bytes(range(256)) * 8,
             "application/octet-stream"),
    raw_body("raw-body-over-limit", 413, "too large", bytes(MAX_BODY_BYTES + 1), "image/png"),
    raw_body("raw-bomb-header", 413, "pixels", png_header_only(60_000, 60_000), "image/png"),
    raw_body("raw-gif-as-png", 415, "GIF", encoded("GIF"), "image/png"),
    Case("raw-put", 405, "method", method="PUT", body=PNG,
         headers={"Content-Type": "image/png"}),
    Case("raw-unknown-route", 404, "not found", path="/predict/extra", body=PNG,
         headers={"Content-Type": "image/png"}),
    Case("raw-browser-gif", 415, "GIF", body=encoded("GIF"),
         headers={"Content-Type": "image/gif", "Accept": BROWSER_ACCEPT}, html=True),
]

OIP_CASES = [
    oip("oip-deep-nesting", 400, "nested too deeply", b"[" * 1000 + b"]" * 1000),
    oip("oip-deep-data", 400, "", infer_json(data=nested(100))),
    oip("oip-int-2-1024", 400, "too large", fp32_text(str(2**1024))),
    oip("oip-huge-digits", 400, "not valid JSON",
        infer_json(data=[0.0]).replace(b"[0.0]", b"[" + b"9" * 5000 + b"]")),
    oip("oip-3.4e38-non-finite-output", 422, "NaN or infinite", fp32_text("3.4e38")),
    oip("oip-1e39-inf", 400, "NaN or infinity", fp32_text("1e39")),
    oip("oip-nan-literal", 400, "NaN", fp32_text("NaN")),
    oip("oip-infinity-literal", 400, "Infinity", fp32_text("-Infinity")),
    oip("oip-not-object", 400, "JSON object", [1, 2]),
    oip("oip-invalid-utf8", 400, "not valid JSON", b'{"inputs": "\xff\xfe"}'),
    oip("oip-truncated", 400, "not valid JSON", infer_json()[:200]),
    oip("oip-empty", 400, "not valid JSON", b""),
    oip("oip-no-inputs", 400, "exactly one", {"outputs": []}),
    oip("oip-two-inputs", 400, "exactly one", {"inputs": [tensor(), tensor()]}),
    oip("oip-missing-field", 400, "missing", {"inputs": [{"name": "input"}]}),
    oip("oip-wrong-name", 400, "unknown input", infer_json(name="images")),
    oip("oip-wrong-dtype", 400, "datatype", infer_json(datatype="INT32")),
    oip("oip-shape-string", 400, "shape", infer_json(shape="1,32,32,3")),
    oip("oip-shape-negative", 400, "shape", infer_json(shape=[-1, SIZE, SIZE, 3])),
    oip("oip-shape-bool", 400, "shape", infer_json(shape=[True, SIZE, SIZE, 3])),
    oip("oip-nchw", 400, "shape", infer_json(shape=[1, 3, SIZE, SIZE])),
    oip("oip-too-little-data", 400, "elements", infer_json(data=[0.0] * 10)),
    oip("oip-strings-as-fp32", 400, "numbers", infer_json(data=["a"] * FLOATS)),
    oip("oip-dict-data", 400, "numbers", infer_json(data={"a": 1})),
    oip("oip-null-data", 400, "", infer_json(data=None)),
    oip("oip-bytes-not-base64", 400, "base64", infer_json(datatype="BYTES", shape=[1],
                                                           data=["%%%"])),
    oip("oip-bytes-text", 400, "not a recognised",
        infer_json(datatype="BYTES", shape=[1], data=[b64(b"hello")])),
    oip("oip-bytes-gif", 415, "GIF", infer_json(datatype="BYTES", shape=[1],
                                                 data=[b64(encoded("GIF"))])),
    oip("oip-bytes-bomb", 413, "pixels", infer_json(
        datatype="BYTES", shape=[1], data=[b64(png_header_only(100_000, 100_000))])),
    oip("oip-bytes-count", 400, "list of 2", infer_json(datatype="BYTES", shape=[2],
                                                         data=[b64(PNG)])),
    oip("oip-unknown-output", 400, "unknown output",
        {"inputs": [tensor()], "outputs": [{"name": "logits"}]}),
    oip("oip-outputs-not-list", 400, "outputs", {"inputs": [tensor()], "outputs": "label"}),
    oip("oip-too-many-images", 413, f"1 to {QUEUE_SIZE} images",
        infer_json(shape=[QUEUE_SIZE + 1, SIZE, SIZE, 3], data=[0] * (QUEUE_SIZE + 1) * FLOATS)),
    oip("oip-image-type", 415, "Content-Type", infer_json(), content_type="image/png"),
    oip("oip-multipart-type", 415, "Content-Type", infer_json(),
        content_type="multipart/form-data; boundary=x"),
    oip("oip-body-over-json-limit", 413, "too large",
        b'{"inputs": [], "pad": "' + bytes(MAX_BODY_BYTES - 100).replace(b"\0", b"a") + b'"}'),
    Case("oip-unknown-model", 404, "unknown model", path="/v2/models/resnet/infer",
         body=infer_json(), headers={"Content-Type": "application/json"}),
    Case("oip-unknown-version", 404, "unknown version",
         path="/v2/models/dr/versions/7/infer", body=infer_json(),
         headers={"Content-Type": "application/json"}),
    Case("oip-get-infer", 405, "method", method="GET", path=INFER),
]

BINARY_CASES = [
    binary("bin-header-past-body", 400, "past the end", header_length=lambda n, b: str(n + b + 1)),
    binary("bin-header-negative", 400, "non-negative decimal", header_length="-5"),
    binary("bin-header-not-integer", 400, "non-negative decimal", header_length="12.5"),
    binary("bin-header-text", 400, "non-negative decimal", header_length="twelve"),
    binary("bin-header-huge", 400, "past the end", header_length=str(2**62)),
    binary("bin-header-missing", 400, "Inference-Header-Content-Length", header_length=None),
    binary("bin-header-missing-no-data", 400, "no Inference-Header-Content-Length",
           data=b"", header_length=None),
    binary("bin-header-cuts-json", 400, "JSON header", header_length=lambda n, b: str(n - 5)),
    binary("bin-header-zero", 400, "not valid JSON", header_length="0"),
    binary("bin-sizes-short", 400, "add up to", size=FLOATS * 4, data=bytes(FLOATS * 4 + 8)),
    binary("bin-size-past-data", 400, "bytes of binary data are left", size=FLOATS * 4 + 4),
    binary("bin-size-huge", 400, "bytes of binary data are left", size=2**62),
    binary("bin-size-negative", 400, "non-negative integer", size=-4),
    binary("bin-size-string", 400, "non-negative integer", size=str(FLOATS * 4)),
    binary("bin-size-vs-shape", 400, "does not match shape", data=bytes(100)),
    binary("bin-data-and-size", 400, "both JSON", extra={"data": [0.0] * FLOATS}),
    binary("bin-fp32-nan", 400, "NaN or infinity",
           data=np.full(FLOATS, np.nan, np.float32).tobytes()),
    binary("bin-fp32-inf", 400, "NaN or infinity",
           data=np.full(FLOATS, -np.inf, np.float32).tobytes()),
    binary("bin-bytes-element-past", 400, "declares 4,294,967,295 bytes", datatype="BYTES",
           shape=[1], data=struct.pack("<I", 2**32 - 1) + PNG),
    binary("bin-bytes-trailing", 400, "after its 1 declared", datatype="BYTES", shape=[1],
           data=prefixed(PNG) + b"xx"),
    binary("bin-bytes-count", 400, "ends before element 1 of 2", datatype="BYTES", shape=[2],
           data=prefixed(PNG)),
    binary("bin-bytes-text", 400, "not a recognised", datatype="BYTES", shape=[1],
           data=prefixed(b"hello")),
    binary("bin-bytes-gif", 415, "GIF", datatype="BYTES", shape=[1],
           data=prefixed(encoded("GIF"))),
    binary("bin-bytes-bomb", 413, "pixels", datatype="BYTES", shape=[1],
           data=prefixed(png_header_only(100_000, 100_000))),
    binary("bin-output-flag-not-bool", 400, "true or false",
           request={"outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}]}),
    binary("bin-request-flag-not-bool", 400, "true or false",
           request={"parameters": {"binary_data_output": 1}}),
    binary("bin-request-parameters-list", 400, "parameters", request={"parameters": []}),
    binary("bin-too-many-images", 413, f"1 to {QUEUE_SIZE} images",
           shape=[QUEUE_SIZE + 1, SIZE, SIZE, 3], data=bytes((QUEUE_SIZE + 1) * FLOATS * 4)),
    binary("bin-body-over-limit", 413, "too large", data=bytes(MAX_BODY_BYTES)),
    binary("bin-image-type", 415, "Content-Type", content_type="image/png"),
]

FRAMING_CASES = [
    chunked(f"{where}-{name}", 400, words, path, chunks, half_close=half, content_type=kind)
    for where, path, kind in (("predict", PREDICT, "image/png"),
                              ("infer", INFER, "application/json"))
    for name, chunks, half, words in (
        ("chunk-size-zz", b"zz\r\nabc\r\n0\r\n\r\n", False, "chunk size"),
        ("chunk-without-crlf", b"3\r\nabcXX0\r\n\r\n", False, "terminator"),
        ("chunk-size-negative", b"-5\r\nabc\r\n0\r\n\r\n", False, "chunk size"),
        ("chunked-truncated", b"400\r\n" + PNG[:50], True, "malformed request body"),
    )
] + [
    chunked("predict-browser-chunk-size-zz", 400, "chunk size", PREDICT,
            b"zz\r\nabc\r\n0\r\n\r\n", accept=BROWSER_ACCEPT),
    short_body("predict-short-content-length", PREDICT, "image/png"),
    short_body("infer-short-content-length", INFER, "application/json"),
]

CASES = MULTIPART_CASES + RAW_CASES + OIP_CASES + BINARY_CASES + FRAMING_CASES


# ---------------------------------------------------------------------- server + checks


@pytest.fixture(scope="module")
def server(serve):
    """One service for the whole module (started once, stopped at the module's end)."""
    server = serve("onnx", MAX_BATCH_SIZE=8, PREFERRED_BATCH_SIZE=8, QUEUE_SIZE=QUEUE_SIZE,
                   MAX_IMAGE_BYTES=MAX_IMAGE_BYTES, MAX_BODY_BYTES=MAX_BODY_BYTES,
                   DECODE_MEMORY_BYTES=DECODE_MEMORY_BYTES, DECODE_WAIT_S=0.5)
    yield server
    server.stop()


@pytest.fixture
def runtime(server) -> str:
    return server.runtime


@dataclass
class Reply:
    status: int
    mimetype: str
    text: str
    headers: dict[str, str]


def send(server, case: Case) -> Reply:
    if case.raw is None:
        response = requests.request(case.method, server.url(case.path), data=case.body,
                                    headers=case.headers, timeout=60)
        return Reply(response.status_code, response.headers.get("Content-Type", ""),
                     response.text, dict(response.headers))
    return raw_exchange(server.port, case.raw, half_close=case.half_close)


def raw_exchange(port: int, request: bytes, *, half_close: bool = False) -> Reply:
    """Send ``request`` on a fresh socket (optionally half-close it) and read the reply."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return Reply(int(lines[0].split()[1]), headers.get("Content-Type", ""),
                 body.decode("utf-8", "replace"), headers)


def assert_error(reply: Reply, case: Case) -> None:
    assert reply.status == case.status, reply.text[:300]
    if case.html:
        assert reply.mimetype.startswith("text/html")
        assert 'role="alert"' in reply.text and case.words.lower() in reply.text.lower()
        return
    assert reply.mimetype.startswith("application/json"), reply.text[:300]
    body = json.loads(reply.text)  # strict: NaN would not parse as an error body anyway
    assert list(body) == ["error"] and isinstance(body["error"], str) and body["error"]
    assert case.words.lower() in body["error"].lower()


@pytest.fixture(scope="module")
def good_answer(server) -> Callable[[], list[float]]:
    """``good_answer()``: the probabilities the service gives one fixed good PNG now."""
    data = encoded("PNG", (48, 40), "RGB")

    def ask() -> list[float]:
        response = requests.post(server.url(PREDICT), data=data,
                                 headers={"Content-Type": "image/png"}, timeout=30)
        assert response.status_code == 200, response.text
        return list(response.json()["probabilities"].values())

    return ask


@pytest.fixture(scope="module")
def baseline(good_answer) -> list[float]:
    return good_answer()


def assert_still_serving(server, good_answer, baseline) -> None:
    for path in ("/healthz", "/readyz", "/v2/health/ready"):
        assert requests.get(server.url(path), timeout=10).status_code == 200
    assert good_answer() == baseline  # bit-identical: same model, same input
    assert server.process.poll() is None


# ---------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_request_gets_its_error_and_the_service_keeps_serving(
        server, good_answer, baseline, case: Case) -> None:
    assert_error(send(server, case), case)
    assert_still_serving(server, good_answer, baseline)


def test_there_are_at_least_60_distinct_hostile_cases() -> None:
    ids = [c.id for c in CASES]
    assert len(set(ids)) == len(ids) >= 60
    routes = {c.path for c in CASES}
    assert {PREDICT, INFER} <= routes


def test_the_good_answer_is_the_models(server, baseline, expected) -> None:
    """The baseline every case compares with is the right answer, not just a stable one."""
    np.testing.assert_allclose(baseline, expected(encoded("PNG", (48, 40), "RGB")), atol=1e-5)


def test_no_response_ever_holds_nan(server, good_answer, baseline) -> None:
    """Strict JSON out: the 422 replaces the 200 with ``NaN`` probabilities it used to be."""
    response = requests.post(server.url(INFER), data=fp32_text("3.4e38"), timeout=30)
    assert response.status_code == 422
    json.loads(response.text, parse_constant=lambda name: pytest.fail(f"{name} in reply"))
    assert_still_serving(server, good_answer, baseline)


def test_an_exif_flood_keeps_the_log_small(server, good_answer, baseline) -> None:
    """65,535 bad EXIF tags made Pillow write ~127,000 warning lines for one request; the
    service logs at most a burst of them (the image itself is fine: 200)."""
    flood = exif_flood_png()
    with warnings.catch_warnings(record=True) as caught:  # the image is hostile indeed
        warnings.simplefilter("always")
        decode_image(flood)
    assert len(caught) > 10_000
    lines_before = len(server.log().splitlines())
    response = requests.post(server.url(PREDICT), data=flood,
                             headers={"Content-Type": "application/octet-stream"}, timeout=120)
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["probabilities"]) == 5
    new_lines = server.log().splitlines()[lines_before:]
    assert len(new_lines) <= 20, new_lines[:5]  # a burst, whatever came before it
    assert all("Tag data" in line or "Pillow" in line for line in new_lines)
    assert_still_serving(server, good_answer, baseline)


def test_malformed_framing_on_a_keep_alive_connection(server, good_answer, baseline) -> None:
    """A broken chunked body on a kept-alive connection is answered with its 400, and the
    connection is not reused for garbage: nothing after the 400 parses as a second reply
    that is not an error."""
    request = (f"POST {PREDICT} HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\n"
               f"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n").encode()
    reply = raw_exchange(server.port, request, half_close=True)
    assert reply.status == 400 and "chunk size" in json.loads(reply.text.split("\n")[0])["error"]
    assert "HTTP/1.1 200" not in reply.text
    assert_still_serving(server, good_answer, baseline)


# ---------------------------------------------------------------------- binary tensor data


def test_binary_framing_at_the_http_level(server, good_answer, baseline) -> None:
    """Over a raw socket: an ``Inference-Header-Content-Length`` past the ``Content-Length``
    is refused even when more bytes follow on the connection (the body ends where HTTP says),
    a body cut short of its ``Content-Length`` is refused, not framed from what came, and a
    chunked body is framed like any other once its chunks are joined."""
    head, data = framed_request()
    body = head + data

    def post(header_length: int, payload: bytes) -> bytes:
        return (f"POST {INFER} HTTP/1.1\r\nHost: test\r\nContent-Length: {len(body)}\r\n"
                f"{BINARY_HEADER}: {header_length}\r\nConnection: close\r\n\r\n"
                ).encode() + payload

    reply = raw_exchange(server.port, post(len(body) + 16, body + bytes(16)), half_close=True)
    assert reply.status == 400 and "past the end of the 12," in reply.text, reply.text
    reply = raw_exchange(server.port, post(len(head), body[:len(head) + 100]), half_close=True)
    assert reply.status == 400 and "ended before its declared length" in reply.text
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 5000]), body[i:i + 5000])
                      for i in range(0, len(body), 5000)) + b"0\r\n\r\n"
    reply = raw_exchange(server.port, (  # no Content-Length: the chunks say where it ends
        f"POST {INFER} HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
        f"{BINARY_HEADER}: {len(head)}\r\nConnection: close\r\n\r\n").encode() + chunks)
    assert reply.status == 200 and reply.headers["Content-Type"] == "application/json"
    assert json.loads(reply.text)["outputs"][0]["name"] == "probabilities"
    assert_still_serving(server, good_answer, baseline)


def test_binary_requests_on_one_keep_alive_connection(server, predictor, expected,
                                                      good_answer, baseline) -> None:
    """Bad and good binary requests alternate on one kept-alive connection: each bad one
    gets its 400, each good one its binary answer (read back by ``tritonclient``)."""
    spec = PreprocessSpec.from_manifest_input(predictor.manifest.input.to_dict())
    image = encoded("PNG", (48, 40), "RGB")
    rows = preprocess(image, spec)[None]
    good = framed_request(data=rows.tobytes(), request={"parameters": {"binary_data_output":
                                                                       True}})
    bad = framed_request(datatype="BYTES", shape=[1], data=struct.pack("<I", 2**31) + PNG)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for head, data in (bad, good, bad, good):
            connection.request("POST", INFER, body=head + data,
                               headers={BINARY_HEADER: str(len(head))})
            response = connection.getresponse()
            body = response.read()
            if head is bad[0]:
                assert response.status == 400, body
                assert "declares 2,147,483,648 bytes" in json.loads(body)["error"]
                continue
            assert response.status == 200, body
            assert response.getheader("Content-Type") == "application/octet-stream"
            length = int(response.getheader(BINARY_HEADER))
            result = InferResult.from_response_body(body, header_length=length)
            np.testing.assert_allclose(result.as_numpy("probabilities"), [expected(image)],
                                       atol=1e-5)
            assert result.as_numpy("label")[0].decode() in predictor.manifest.class_names
    finally:
        connection.close()
    assert_still_serving(server, good_answer, baseline)
