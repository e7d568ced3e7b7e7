"""Raw capture or dataset image: the ``input`` parameter of every inference route.

A model was trained on dataset images, and a dataset image is not always the photo a user
has: BloodMNIST kept the centre 200 x 200 px of each 363 x 360 px microscope capture. The
manifest's ``input.raw_capture`` (:class:`shared.imaging.FieldOfView`) says how; uploads are
taken as raw captures and cropped to it (``input=raw``, the default), unless the client says
it sends images already in dataset format (``input=dataset``), which go through exactly the
decode and preprocessing training used and nothing else. One name and the same values in
the upload form (a form field), ``POST /predict`` (query or form field) and the Open
Inference Protocol (request ``parameters``). Any other value is refused (400).
"""

from __future__ import annotations

from shared.imaging import WHOLE_IMAGE, FieldOfView

PARAMETER = "input"
RAW = "raw"
DATASET = "dataset"
KINDS = (RAW, DATASET)
DEFAULT = RAW
ECHO_CHARS = 40
"""Longest rejected value quoted back in the error (a form field may hold 500 kB)."""


class BadInputKind(ValueError):
    """An ``input`` value that is neither ``raw`` nor ``dataset`` (400)."""


def parse_input_kind(value: object) -> str:
    """The kind a request asked for: :data:`DEFAULT` when absent, else one of :data:`KINDS`."""
    if value is None:
        return DEFAULT
    if value not in KINDS:
        shown = repr(value) if len(repr(value)) <= ECHO_CHARS else repr(value)[:ECHO_CHARS] + "..."
        raise BadInputKind(
            f"{PARAMETER}={shown} is not accepted: send {PARAMETER}={RAW} (a raw capture, "
            f"cropped to the field of view the model was trained on; the default) or "
            f"{PARAMETER}={DATASET} (an image already in the dataset's format)")
    return str(value)


def field_of_view(kind: str, raw_capture: FieldOfView) -> FieldOfView:
    """What to crop an upload of ``kind`` to: the model's raw-capture field of view for a
    raw upload, nothing (the whole image) for a dataset image."""
    return raw_capture if kind == RAW else WHOLE_IMAGE
