"""The upload form and ``POST /predict``, one route for browsers and API clients.

The image arrives as multipart field ``image`` (the form, ``curl -F image=@x.jpg``) or as the
raw body with an ``image/*`` or ``application/octet-stream`` Content-Type
(``curl --data-binary @x.jpg -H 'Content-Type: image/jpeg'``). The answer is an HTML result
page when the client prefers HTML (a browser's form post) and JSON otherwise.

``input=raw`` (the default) or ``input=dataset``, as a query parameter or a form field,
says whether the image is a raw capture, cropped to the field of view the model was trained
on, or already a dataset image (see ``services.input_kind``).
"""

from __future__ import annotations

import base64
import io

from flask import Blueprint, Response, current_app, jsonify, render_template, request
from PIL import Image

from services.body import read_body
from services.errors import ApiError, wants_html
from services.input_kind import PARAMETER, parse_input_kind

bp = Blueprint("web", __name__)

FIELD = "image"
RAW_TYPES = ("application/octet-stream",)
THUMBNAIL_PX = 320


@bp.get("/")
def index() -> str:
    return render_template("index.html", engine=current_app.extensions["versus"])


@bp.post("/predict")
def predict() -> Response | str:
    engine = current_app.extensions["versus"]
    engine.admit()  # a full queue refuses before the body is read
    html = wants_html()
    keep = THUMBNAIL_PX if html else None
    data = read_upload()
    kind = upload_input_kind()
    (prediction,) = engine.classify_images([data], keep_image=keep, input_kind=kind)
    result = {**engine.prediction_json(prediction), "input": engine.input_json(kind)}
    if not html:
        return jsonify(result)
    return render_template(
        "result.html",
        engine=engine,
        prediction=prediction,
        result=result,
        thumbnail=thumbnail_data_uri(prediction.image),
    )


def upload_input_kind() -> str:
    """``input`` from the query string or, for a form post, the form (400 if they differ)."""
    given = {request.args.get(PARAMETER)}
    if request.mimetype == "multipart/form-data":
        given.add(request.form.get(PARAMETER))
    given.discard(None)
    if len(given) > 1:
        raise ApiError(400, f"{PARAMETER} is given twice with different values "
                            f"{sorted(given)}", reason="bad_input_kind")
    return parse_input_kind(given.pop() if given else None)


def read_upload() -> bytes:
    """The uploaded image's bytes, or a 400/415 naming what was wrong with the request."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        upload = request.files.get(FIELD)
        if upload is None or not upload.filename:
            raise ApiError(400, f"no file: send the image in multipart field {FIELD!r}",
                           reason="no_file")
        data = upload.read()
        if not data:
            raise ApiError(400, f"the uploaded file {upload.filename!r} is empty",
                           reason="empty_file")
        return data
    if mimetype.startswith("image/") or mimetype in RAW_TYPES:
        return read_body()
    raise ApiError(
        415,
        f"Content-Type {mimetype or '(none)'} is not accepted: send multipart/form-data "
        f"with field {FIELD!r}, or the image itself as image/* or application/octet-stream",
        reason="unsupported_media_type",
    )


def thumbnail_data_uri(image: Image.Image | None) -> str | None:
    """The upload's thumbnail (kept by the engine at :data:`THUMBNAIL_PX`, never the
    original: it may be 20 MB) as a JPEG ``data:`` URI."""
    if image is None:
        return None
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
