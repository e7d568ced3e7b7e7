"""Raw captures through a running service: with the training field of view, without it, and
as dataset images.

    python -m bench.studies.field_of_view --model onnx=models/bloodmnist/onnx/1 \
        [--count 80] [--seed 0] [--json fov.json]

Generates ``--count`` raw microscope captures (``synth_blood.render_capture``: one cell on a
363 x 360 px smear, the eight classes in turn, seeds disjoint from the synthetic training
set's) and starts the model's service (``python -m services``, one worker, loopback). Each
capture is classified three ways through ``POST /predict``:

- ``raw``: the capture as a user would upload it, with the new default ``input=raw``: the
  service crops it to the manifest's ``input.raw_capture`` first;
- ``raw, whole image``: the capture sent with ``input=dataset``, i.e. squared and resized
  whole, which is what every upload got before the field of view was carried;
- ``dataset image``: the capture's centre crop (``shared.imaging.crop_field_of_view``, as
  MedMNIST made BloodMNIST) sent with ``input=dataset``.

Prints the correct count of each and how often ``raw`` gives the dataset image's answer
(it should always: both reach the model as the same tensor). Accuracy figures, not timings:
the machine's load does not change them.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import requests
from PIL import Image

from bench.services import LocalServiceSettings, start_service
from shared.datasets import get_dataset_spec, synth_blood
from shared.imaging import FieldOfView, crop_field_of_view
from shared.manifest import read_manifest

MODES = {  # name -> (which image, the input parameter)
    "raw": ("capture", "raw"),
    "raw, whole image": ("capture", "dataset"),
    "dataset image": ("crop", "dataset"),
}
SEED_TAG = 0xF0F
"""First element of every capture's seed: (tag, seed, i) never equals a training image's
(seed, i), so no capture is a training image."""
READY_TIMEOUT_S = 300.0
REQUEST_TIMEOUT_S = 60.0


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def captures(count: int, seed: int, fov: FieldOfView) -> list[tuple[int, bytes, bytes]]:
    """(label, capture PNG, dataset-image PNG) for ``count`` captures, classes in turn."""
    classes = len(synth_blood.CLASS_NAMES)
    out = []
    for i in range(count):
        label = i % classes
        capture = Image.fromarray(synth_blood.render_capture(label, (SEED_TAG, seed, i)))
        out.append((label, png(capture), png(crop_field_of_view(capture, fov))))
    return out


def classify(url: str, data: bytes, input_kind: str) -> str:
    response = requests.post(f"{url}/predict", params={"input": input_kind}, data=data,
                             headers={"Content-Type": "image/png",
                                      "Accept": "application/json"},
                             timeout=REQUEST_TIMEOUT_S)
    response.raise_for_status()
    return response.json()["label"]


def score(url: str, items: list[tuple[int, bytes, bytes]], class_names: Sequence[str]
          ) -> dict[str, object]:
    """Correct answers per mode and the raw / dataset-image agreement."""
    answers: dict[str, list[str]] = {mode: [] for mode in MODES}
    for _label, capture, crop in items:
        images = {"capture": capture, "crop": crop}
        for mode, (image, kind) in MODES.items():
            answers[mode].append(classify(url, images[image], kind))
    truth = [class_names[label] for label, _, _ in items]
    correct = {mode: sum(a == t for a, t in zip(got, truth, strict=True))
               for mode, got in answers.items()}
    agree = sum(a == b for a, b in zip(answers["raw"], answers["dataset image"], strict=True))
    return {"count": len(items), "correct": correct, "raw_agrees_with_dataset_image": agree}


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.studies.field_of_view",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True,
                        help="RUNTIME=MODEL_DIR of a BloodMNIST model, e.g. "
                             "onnx=models/bloodmnist/onnx/1 (required)")
    parser.add_argument("--count", type=int, default=80,
                        help="raw captures to generate (default: 80)")
    parser.add_argument("--seed", type=int, default=0, help="capture seed (default: 0)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the result as JSON here (default: none)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = get_args_parser().parse_args(argv)
    runtime, _, model_text = args.model.partition("=")
    if not model_text or args.count < 1:
        print("error: --model takes RUNTIME=MODEL_DIR and --count a positive number",
              file=sys.stderr)
        return 2
    model_dir = Path(model_text)
    manifest = read_manifest(model_dir)
    if manifest.dataset != "bloodmnist":
        print(f"error: {model_dir} is a {manifest.dataset} model; the captures are BloodMNIST's",
              file=sys.stderr)
        return 2
    fov = get_dataset_spec("bloodmnist").raw_capture
    items = captures(args.count, args.seed, fov)
    settings = LocalServiceSettings(workers=1, intra_op_threads=1, max_batch_size=1)
    with tempfile.TemporaryDirectory(prefix="fov-") as workdir:
        service = start_service(runtime, model_dir, Path(workdir), settings)
        try:
            service.wait_ready(READY_TIMEOUT_S)
            result = score(service.url, items, manifest.class_names)
        finally:
            service.stop()
    result.update(model=str(model_dir), runtime=runtime,
                  raw_capture=manifest.input.to_dict()["raw_capture"],
                  model_test_accuracy=manifest.test_metrics.get("accuracy"))
    n = result["count"]
    print(f"{n} generated raw captures (363 x 360 px), {runtime} model {model_dir} "
          f"(test accuracy on dataset images {result['model_test_accuracy']}):")
    for mode, correct in result["correct"].items():  # type: ignore[union-attr]
        print(f"  {mode:<18} {correct:>4} / {n} correct")
    print(f"  raw and dataset image give the same answer for "
          f"{result['raw_agrees_with_dataset_image']} / {n}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
