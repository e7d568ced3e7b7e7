"""Decode micro-benchmark: a camera-size JPEG to a model input, with and without ``draft()``.

Builds a 3000x2000 camera-like JPEG in memory (smooth scene + texture + sensor noise, so
the entropy decoder has real work), then times the shared pipeline
``decode_image -> to_square_uint8 -> normalize`` both ways, interleaved so that drift on a
shared machine hits both equally. Warm-up runs are excluded.

    python -m bench.studies.decode [--repeats 20] [--size 224]
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import time
from collections.abc import Callable

import numpy as np
import PIL
from PIL import Image, features

from shared.imaging import PreprocessSpec, decode_image, normalize, to_square_uint8

DEFAULT_WIDTH, DEFAULT_HEIGHT = 3000, 2000
DEFAULT_QUALITY = 90
DEFAULT_REPEATS = 20
DEFAULT_SIZE = 224
DEFAULT_SEED = 0
WARMUP_RUNS = 1

SCENE_GRID = (12, 8)  # coarse colour grid (w, h) upsampled into the smooth "scene"
TEXTURE_CELL_PX = 6  # size of the mid-frequency texture cells
SCENE_WEIGHT, TEXTURE_WEIGHT = 0.65, 0.35
SENSOR_NOISE_SIGMA = 4.0  # grey levels
NS_PER_MS = 1e6


def camera_like_jpeg(width: int, height: int, quality: int, seed: int) -> bytes:
    """A JPEG with camera-like statistics: smooth regions, fine texture and sensor noise."""
    rng = np.random.default_rng(seed)
    grid_w, grid_h = SCENE_GRID
    scene = Image.fromarray(rng.integers(0, 256, (grid_h, grid_w, 3), dtype=np.uint8))
    scene = scene.resize((width, height), Image.Resampling.BICUBIC)
    cells = (height // TEXTURE_CELL_PX, width // TEXTURE_CELL_PX, 3)
    texture = Image.fromarray(rng.integers(0, 256, cells, dtype=np.uint8))
    texture = texture.resize((width, height), Image.Resampling.BILINEAR)
    pixels = np.asarray(scene, np.float32) * SCENE_WEIGHT
    pixels += np.asarray(texture, np.float32) * TEXTURE_WEIGHT
    pixels += rng.standard_normal(pixels.shape, dtype=np.float32) * SENSOR_NOISE_SIGMA
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def make_pipeline(data: bytes, spec: PreprocessSpec, *, draft: bool) -> Callable[[], np.ndarray]:
    """The shared serving pipeline as a zero-argument callable."""
    target = spec.size if draft else None

    def run() -> np.ndarray:
        img = decode_image(data, target_size=target)
        return normalize(to_square_uint8(img, spec.size), spec)

    return run


def time_ms(fn: Callable[[], object]) -> float:
    """Wall time of one call in milliseconds."""
    start = time.perf_counter_ns()
    fn()
    return (time.perf_counter_ns() - start) / NS_PER_MS


def interleaved_timings(
    pipelines: dict[str, Callable[[], object]], repeats: int
) -> dict[str, list[float]]:
    """Time each pipeline ``repeats`` times, alternating which goes first every round."""
    for fn in pipelines.values():
        for _ in range(WARMUP_RUNS):
            fn()
    names = list(pipelines)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else names[::-1]
        for name in order:
            timings[name].append(time_ms(pipelines[name]))
    return timings


def environment() -> str:
    """One line naming what the figures depend on."""
    turbo = features.version_feature("libjpeg_turbo") or "absent"
    return (
        f"python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"libjpeg-turbo {turbo}, numpy {np.__version__}, "
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()})"
    )


def get_args_parser() -> argparse.ArgumentParser:
    """Command-line flags; each help states its default."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=DEFAULT_WIDTH, help="(default 3000)")
    parser.add_argument("--height", type=int, default=DEFAULT_HEIGHT, help="(default 2000)")
    parser.add_argument("--quality", type=int, default=DEFAULT_QUALITY, help="(default 90)")
    parser.add_argument("--size", type=int, default=DEFAULT_SIZE, help="model side (default 224)")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="(default 20)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="(default 0)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Build the JPEG, time both pipelines, print min/median/max and the median ratio."""
    args = get_args_parser().parse_args(argv)
    data = camera_like_jpeg(args.width, args.height, args.quality, args.seed)
    spec = PreprocessSpec(size=args.size)
    drafted = decode_image(data, target_size=args.size)
    pipelines = {
        "draft": make_pipeline(data, spec, draft=True),
        "full": make_pipeline(data, spec, draft=False),
    }
    level_diff = np.abs(
        to_square_uint8(drafted, args.size).astype(int)
        - to_square_uint8(decode_image(data), args.size).astype(int)
    )
    timings = interleaved_timings(pipelines, args.repeats)

    print(environment())
    print(
        f"input: {args.width}x{args.height} JPEG q{args.quality}, {len(data) / 2**20:.2f} MiB; "
        f"draft decodes to {drafted.size[0]}x{drafted.size[1]}; output {args.size}x{args.size}"
    )
    print(f"{'pipeline':<8} {'min ms':>9} {'median ms':>10} {'max ms':>9}   (n={args.repeats})")
    for name, values in timings.items():
        print(
            f"{name:<8} {min(values):>9.2f} {statistics.median(values):>10.2f} {max(values):>9.2f}"
        )
    ratio = statistics.median(timings["full"]) / statistics.median(timings["draft"])
    print(f"median speed-up, full / draft: {ratio:.1f}x")
    print(
        f"draft vs full output pixels: mean |diff| {level_diff.mean():.2f}, "
        f"max {level_diff.max()} grey levels"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
