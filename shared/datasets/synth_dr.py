"""Synthetic diabetic-retinopathy fundus photographs in the Kaggle 2015 layout.

`generate_dr` writes ``trainLabels.csv`` (columns ``image,level``) and one
``<patient>_<left|right>.jpeg`` per eye, so the real reader (`shared.datasets.dr`) and every
trainer run unchanged on data that needs no download. The pictures imitate the real ones
closely enough to exercise the pipeline honestly: a dark surround and a vignetted orange-red
fundus disc with an optic disc (mirrored between the eyes), a darker macula and vessels that
branch from the disc. The grade drives the lesions (ETDRS-style): microaneurysms from grade
1, haemorrhages and hard exudates from 2, cotton-wool spots from 3, new vessels at 4, with
over-dispersed counts so that neighbouring grades overlap (learnable, not trivial). Nuisance
variation (illumination, colour cast, blur, rotation, camera aspect ratio) keeps a model
from keying on anything but the lesions.

Everything is numpy + Pillow, vectorised (no per-pixel Python), and deterministic for a seed:
every image has its own seed derived from (seed, patient, eye), so output does not depend on
the number of worker processes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .dr import write_kaggle_labels

N_GRADES = 5
# Share of eyes per grade in Kaggle's 2015 training labels (25810/2443/5292/873/708 of 35126).
KAGGLE_BALANCE: tuple[float, ...] = (0.735, 0.07, 0.15, 0.025, 0.02)
EYES = ("left", "right")
IMAGE_SUFFIX = ".jpeg"
JPEG_QUALITY = 90
# Latent (Gaussian-copula) correlation between a patient's two eyes: most pairs share a
# grade, a minority differ by one, as in the real data.
EYE_CORRELATION = 0.92

# Camera frames: width / height; the fundus circle fills the height (short side == size).
CAMERA_ASPECTS = (1.0, 1.25, 4 / 3, 1.5)
CAMERA_ASPECT_P = (0.3, 0.2, 0.35, 0.15)

# Geometry in units of the fundus radius R, canonical right eye (optic disc on the right).
FUNDUS_RADIUS = 0.47  # R as a fraction of the short side
DISC_CENTRE = (0.40, -0.03)  # (x, y), y downwards
DISC_RADIUS = 0.14
MACULA_CENTRE = (-0.12, 0.04)
MACULA_SIGMA = 0.13
REFERENCE_SIZE = 512  # pixel sizes below are given at this image size and scaled

# Colours (linear 0..1 albedo before illumination).
FUNDUS_ORANGE = np.array([0.86, 0.42, 0.17], np.float32)
FUNDUS_DARK = np.array([0.58, 0.22, 0.10], np.float32)
DISC_COLOUR = np.array([0.98, 0.74, 0.48], np.float32)
CUP_COLOUR = np.array([1.0, 0.93, 0.78], np.float32)
VESSEL_TINT = np.array([0.50, 0.20, 0.20], np.float32)  # multiplicative, at full vein alpha
RED_LESION_TINT = np.array([0.42, 0.10, 0.09], np.float32)
EXUDATE_COLOUR = np.array([1.0, 0.92, 0.42], np.float32)
COTTON_WOOL_COLOUR = np.array([0.97, 0.90, 0.80], np.float32)

# Mean lesion counts per grade (index = grade) before per-image over-dispersion.
MICROANEURYSMS = (0.15, 5.0, 12.0, 20.0, 16.0)
HAEMORRHAGES = (0.0, 0.3, 8.0, 22.0, 14.0)  # severe NPDR: many, all quadrants
EXUDATE_CLUSTERS = (0.0, 0.08, 2.5, 3.0, 2.5)
COTTON_WOOL_SPOTS = (0.0, 0.0, 0.5, 3.0, 2.5)
NEW_VESSEL_TUFTS = (0.0, 0.0, 0.0, 0.0, 1.0)  # grade 4 always has at least one more
PRERETINAL_HAEMORRHAGE_P = 0.35  # grade 4 only
VENOUS_DILATION = (1.0, 1.0, 1.0, 1.25, 1.3)  # vein width factor (beading, dilation)
OVERDISPERSION = 0.5  # sigma of the log-normal factor on every count


@dataclass(frozen=True)
class _Frame:
    """Pixel geometry of one square fundus rendering (canonical right eye)."""

    size: int
    cx: float
    cy: float
    radius: float

    @property
    def scale(self) -> float:
        """Pixels per pixel-at-REFERENCE_SIZE, for lesion and vessel sizes."""
        return self.size / REFERENCE_SIZE

    def px(self, u: float, v: float) -> tuple[float, float]:
        """Fundus coordinates (units of R) to pixel coordinates."""
        return self.cx + u * self.radius, self.cy + v * self.radius


# ---------------------------------------------------------------- grades and patients


def largest_remainder(n: int, weights: Sequence[float]) -> np.ndarray:
    """Integer counts summing to n, proportional to weights; every positive weight gets >= 1
    when n allows, so small synthetic sets still contain every class."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"class weights must be non-negative with a positive sum, got {weights}")
    w = w / w.sum()
    counts = np.floor(n * w).astype(np.int64)
    order = np.argsort(-(n * w - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    positive = np.flatnonzero(w > 0)
    if n >= len(positive):
        for k in positive[counts[positive] == 0]:
            counts[k] += 1
            counts[np.argmax(counts)] -= 1
    return counts


def assign_grades(n_patients: int, balance: Sequence[float], seed: int) -> np.ndarray:
    """(n_patients, 2) grades for (left, right) eyes with exact per-grade totals.

    A shared latent severity per patient (Gaussian copula, EYE_CORRELATION) is ranked across
    all eyes and cut at the class-count boundaries: both eyes of a patient usually share a
    grade or differ by one, and the marginal follows `balance` exactly.
    """
    if len(balance) != N_GRADES:
        raise ValueError(f"class_balance needs {N_GRADES} values, got {len(balance)}")
    rng = np.random.default_rng([seed, 0xD5])
    patient = rng.standard_normal((n_patients, 1))
    own = rng.standard_normal((n_patients, 2))
    latent = EYE_CORRELATION * patient + math.sqrt(1 - EYE_CORRELATION**2) * own
    counts = largest_remainder(2 * n_patients, balance)
    ranks = np.empty(2 * n_patients, np.int64)
    ranks[np.argsort(latent.ravel(), kind="stable")] = np.arange(2 * n_patients)
    grades = np.searchsorted(np.cumsum(counts), ranks, side="right")
    return grades.reshape(n_patients, 2)


# ---------------------------------------------------------------- low-level drawing


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) float32 smooth noise, unit-ish amplitude, features ~size/cells wide."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return np.asarray(
        Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    )


def _mask(size: int) -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A blank 8-bit mask and its drawer (shapes are drawn, blurred, then used as alpha)."""
    image = Image.new("L", (size, size), 0)
    return image, ImageDraw.Draw(image)


def _mix(img: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In place: blend img towards colour by alpha (paint-like layers: disc, exudates)."""
    img += alpha[..., None] * (colour - img)


def _darken(img: np.ndarray, alpha: np.ndarray, tint: np.ndarray) -> None:
    """In place: multiply by tint where alpha is 1 (absorbing layers: blood, vessels)."""
    img *= 1.0 - alpha[..., None] * (1.0 - tint)


def _apply_mask(
    img: np.ndarray,
    mask: Image.Image,
    blur: float,
    op: Callable[[np.ndarray, np.ndarray, np.ndarray], None],
    colour: np.ndarray,
    strength: float = 1.0,
) -> None:
    """Soften a drawn mask by `blur` px and apply it with `op` (_mix or _darken) in place.

    Only the mask's bounding box (plus the blur margin) is touched: lesions are small, so a
    layer costs about a millisecond even at 512 px.
    """
    box = mask.getbbox()
    if box is None:
        return
    margin = int(math.ceil(3 * blur)) + 1
    x0, y0 = max(0, box[0] - margin), max(0, box[1] - margin)
    x1, y1 = min(mask.width, box[2] + margin), min(mask.height, box[3] + margin)
    crop = mask.crop((x0, y0, x1, y1))
    if blur > 0:
        crop = crop.filter(ImageFilter.GaussianBlur(blur))
    alpha = np.asarray(crop, np.float32) * np.float32(strength / 255.0)
    op(img[y0:y1, x0:x1], alpha, colour)


def _window(
    size: int, x: float, y: float, r: float
) -> tuple[tuple[slice, slice], np.ndarray, np.ndarray]:
    """Slices of a (size, size) image within r of (x, y) plus their float ogrid coordinates
    (local features are computed on their window only, not on the whole image)."""
    x0, y0 = max(0, int(x - r)), max(0, int(y - r))
    x1, y1 = min(size, int(x + r) + 2), min(size, int(y + r) + 2)
    yy, xx = np.ogrid[y0:y1, x0:x1]
    return (slice(y0, y1), slice(x0, x1)), yy.astype(np.float32), xx.astype(np.float32)


def _dot(draw: ImageDraw.ImageDraw, x: float, y: float, r: float, fill: int) -> None:
    """Filled circle of radius r (at least half a pixel) centred at (x, y)."""
    r = max(r, 0.5)
    draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)


def _walk(
    rnd: random.Random,
    start: tuple[float, float],
    angle: float,
    step: float,
    n_steps: int,
    noise: float,
) -> list[tuple[float, float]]:
    """A tortuous polyline: n_steps of length `step` with Gaussian turning (new vessels)."""
    x, y = start
    points = [(x, y)]
    for _ in range(n_steps):
        angle += rnd.gauss(0.0, noise)
        x, y = x + step * math.cos(angle), y + step * math.sin(angle)
        points.append((x, y))
    return points


# ---------------------------------------------------------------- anatomy


def _background(rng: np.random.Generator, frame: _Frame, pigment: float) -> np.ndarray:
    """Fundus albedo: orange-red mixed by pigmentation plus choroidal texture at 3 scales."""
    s = frame.size
    base = (1 - pigment) * FUNDUS_ORANGE + pigment * FUNDUS_DARK
    texture = (
        0.07 * _smooth_noise(rng, s, 6)
        + 0.04 * _smooth_noise(rng, s, 24)
        + 0.02 * _smooth_noise(rng, s, max(8, s // 6))
    )
    img = np.empty((s, s, 3), np.float32)
    img[:] = base
    img *= (1.0 + texture)[..., None]
    return img


def _macula(rng: np.random.Generator, img: np.ndarray, frame: _Frame) -> tuple[float, float]:
    """Darken the macula (a broad Gaussian) with a faint foveal reflex; return its centre
    in fundus units (exudates cluster around it)."""
    mu, mv = MACULA_CENTRE[0] + rng.normal(0, 0.03), MACULA_CENTRE[1] + rng.normal(0, 0.03)
    mx, my = frame.px(mu, mv)
    sig = MACULA_SIGMA * frame.radius * rng.uniform(0.85, 1.2)
    win, yy, xx = _window(frame.size, mx, my, 3 * sig)
    r2 = (xx - mx) ** 2 + (yy - my) ** 2
    dark = rng.uniform(0.2, 0.4) * np.exp(-r2 / (2 * sig * sig))
    img[win] *= 1.0 - dark[..., None] * np.array([0.85, 1.0, 1.0], np.float32)
    reflex = np.exp(-r2 / (2 * (0.06 * sig) ** 2)) * rng.uniform(0.0, 0.25)
    _mix(img[win], reflex, CUP_COLOUR)
    return mu, mv


def _optic_disc(
    rng: np.random.Generator, img: np.ndarray, frame: _Frame, disc: tuple[float, float]
) -> None:
    """Paint the optic disc: a slightly tall, sharp-edged yellow-pink oval with a faint halo
    and a paler, off-centre cup."""
    dx, dy = frame.px(*disc)
    rd = DISC_RADIUS * frame.radius * rng.uniform(0.85, 1.15)
    win, yy, xx = _window(frame.size, dx, dy, 3 * rd)
    aspect = rng.uniform(0.85, 1.0)  # discs are slightly taller than wide
    d2 = ((xx - dx) / aspect) ** 2 + (yy - dy) ** 2
    d = np.sqrt(d2)
    local = img[win]
    _mix(local, 0.2 * np.exp(-d2 / (2 * (1.5 * rd) ** 2)), DISC_COLOUR)
    edge = max(1.0, 0.06 * rd)
    _mix(local, np.clip((rd - d) / edge + 0.5, 0, 1) * rng.uniform(0.6, 0.85), DISC_COLOUR)
    rc = rd * rng.uniform(0.3, 0.6)
    cx = dx + rng.uniform(-0.2, 0.05) * rd
    dc = np.sqrt((xx - cx) ** 2 + (yy - dy) ** 2)
    _mix(local, np.clip((rc - dc) / (3 * edge), 0, 1) * rng.uniform(0.5, 0.8), CUP_COLOUR)


# Main vessel trunks leaving the disc: (initial angle, target angle, pull, vein width at 512).
# Angles in radians, image coordinates (y down); temporal arcades bend around the macula.
_TRUNKS = (
    (-1.75, -2.9, 0.10, 6.0),  # superior temporal arcade
    (1.75, 2.9, 0.10, 6.0),  # inferior temporal arcade
    (-0.75, -0.6, 0.04, 4.0),  # superior nasal
    (0.75, 0.6, 0.04, 4.0),  # inferior nasal
    (3.1, 3.1, 0.03, 2.5),  # small macular branch
)


def _vessel_segments(
    rnd: random.Random, frame: _Frame, disc: tuple[float, float]
) -> list[tuple[float, float, float, float, float, int]]:
    """Branching random-walk vessel tree from the disc.

    Returns segments (x0, y0, x1, y1, width_px, fill) in pixels; fill 255 for veins, lower
    for the lighter, thinner arteries.
    """
    dx, dy = frame.px(*disc)
    step = 0.022 * frame.radius
    limit2 = (0.99 * frame.radius) ** 2
    segments = []
    stack = []
    for angle, target, pull, width in _TRUNKS:
        for offset, wfac, fill in ((-0.12, 1.0, 255), (0.12, 0.75, 170)):
            a = angle + offset + rnd.gauss(0, 0.12)
            start_r = DISC_RADIUS * frame.radius * 0.3
            x, y = dx + start_r * math.cos(a), dy + start_r * math.sin(a)
            w = width * wfac * frame.scale * rnd.uniform(0.85, 1.15)
            stack.append((x, y, a, target + rnd.gauss(0, 0.15), pull, w, fill, 0))
    min_width = 0.6 * frame.scale
    while stack:
        x, y, a, target, pull, w, fill, depth = stack.pop()
        for _ in range(160):
            a += pull * (target - a) + rnd.gauss(0.0, 0.10)
            nx, ny = x + step * math.cos(a), y + step * math.sin(a)
            if (nx - frame.cx) ** 2 + (ny - frame.cy) ** 2 > limit2:
                break
            segments.append((x, y, nx, ny, w, fill))
            x, y, w = nx, ny, w * 0.985
            if w < min_width:
                break
            if depth < 4 and rnd.random() < 0.055:
                branch = a + rnd.choice((-1, 1)) * rnd.uniform(0.45, 1.0)
                stack.append((x, y, branch, branch, 0.05, w * 0.65, fill, depth + 1))
                w *= 0.88
    return segments


def _draw_segments(
    draw: ImageDraw.ImageDraw,
    segments: Sequence[tuple[float, float, float, float, float, int]],
    vein_scale: float = 1.0,
) -> None:
    """Draw vessel segments; sub-pixel widths become 1 px lines of proportional intensity.
    Veins (fill 255) are widened by vein_scale (venous dilation of severe disease)."""
    for x0, y0, x1, y1, w, fill in segments:
        if fill == 255:
            w *= vein_scale
        width = max(1, round(w))
        value = int(fill * min(1.0, w))
        draw.line((x0, y0, x1, y1), fill=value, width=width)
        if width >= 3:
            _dot(draw, x1, y1, width / 2, value)


# ---------------------------------------------------------------- lesions


def lesion_counts(grade: int, rng: np.random.Generator) -> dict[str, int]:
    """Lesion counts for one eye of `grade`: Poisson with a shared log-normal severity factor.

    The shared factor makes counts over-dispersed, so a severe grade 2 and a mild grade 3
    look alike: the grade is learnable from the lesions but not trivially.
    """
    severity = float(np.exp(rng.normal(0.0, OVERDISPERSION)))
    counts = {
        "microaneurysms": MICROANEURYSMS[grade],
        "haemorrhages": HAEMORRHAGES[grade],
        "exudate_clusters": EXUDATE_CLUSTERS[grade],
        "cotton_wool_spots": COTTON_WOOL_SPOTS[grade],
        "new_vessel_tufts": NEW_VESSEL_TUFTS[grade],
    }
    out = {k: int(rng.poisson(lam * severity)) for k, lam in counts.items()}
    if grade >= 1:
        out["microaneurysms"] = max(1, out["microaneurysms"])
    if grade >= 4:
        out["new_vessel_tufts"] += 1
    out["preretinal_haemorrhage"] = int(grade >= 4 and rng.random() < PRERETINAL_HAEMORRHAGE_P)
    return out


def _posterior_points(
    rng: np.random.Generator,
    n: int,
    centre: tuple[float, float],
    sigma: float,
    disc: tuple[float, float],
) -> np.ndarray:
    """n lesion sites (fundus units) around `centre`, inside the fundus and off the disc."""
    if n == 0:
        return np.zeros((0, 2))
    pts = rng.normal(centre, sigma, size=(8 * n + 16, 2))
    ok = (np.hypot(pts[:, 0], pts[:, 1]) < 0.9) & (
        np.hypot(pts[:, 0] - disc[0], pts[:, 1] - disc[1]) > 1.3 * DISC_RADIUS
    )
    return pts[ok][:n]


def _draw_red_lesions(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    frame: _Frame,
    counts: dict[str, int],
    macula: tuple[float, float],
    disc: tuple[float, float],
) -> None:
    """Microaneurysms (tiny dots), dot-blot and flame haemorrhages, preretinal blood."""
    k = frame.scale
    mid = ((macula[0] + disc[0]) / 2, (macula[1] + disc[1]) / 2)
    for u, v in _posterior_points(rng, counts["microaneurysms"], mid, 0.33, disc):
        _dot(draw, *frame.px(u, v), rng.uniform(1.0, 2.2) * k, int(rng.integers(200, 256)))
    for u, v in _posterior_points(rng, counts["haemorrhages"], mid, 0.4, disc):
        x, y = frame.px(u, v)
        fill = int(rng.integers(190, 256))
        if rng.random() < 0.6:  # dot-blot: a few overlapping discs
            for _ in range(int(rng.integers(1, 4))):
                ox, oy = rng.normal(0, 2.5 * k, 2)
                _dot(draw, x + ox, y + oy, rng.uniform(3.0, 10.0) * k, fill)
        else:  # flame: a tapered streak along the nerve fibres (radial from the disc)
            a = math.atan2(v - disc[1], u - disc[0])
            length, width = rng.uniform(7, 16) * k, rng.uniform(1.8, 4.0) * k
            t = np.linspace(0, 2 * np.pi, 18, endpoint=False)
            px = length * np.cos(t)
            py = width * np.sin(t) * (0.6 + 0.4 * np.cos(t))
            poly = np.stack(
                [x + px * math.cos(a) - py * math.sin(a), y + px * math.sin(a) + py * math.cos(a)],
                axis=1,
            )
            draw.polygon([tuple(p) for p in poly], fill=fill)
    for u, v in _posterior_points(rng, counts["preretinal_haemorrhage"], macula, 0.25, disc):
        x, y = frame.px(u, v)
        r = rng.uniform(18, 35) * k
        draw.chord((x - r, y - r, x + r, y + r), 0, 180, fill=235)  # boat shape, flat top


def _draw_new_vessels(
    rnd: random.Random,
    draw: ImageDraw.ImageDraw,
    frame: _Frame,
    n_tufts: int,
    disc: tuple[float, float],
    segments: Sequence[tuple[float, float, float, float, float, int]],
) -> None:
    """Fine tortuous vessel nets on the disc (NVD) or on a major vessel (NVE)."""
    k = frame.scale
    big = [s for s in segments if s[4] >= 2.5 * k] or list(segments)
    dx, dy = frame.px(*disc)
    for _ in range(n_tufts):
        if rnd.random() < 0.6 or not big:
            r = rnd.uniform(0, 1.4) * DISC_RADIUS * frame.radius
            a = rnd.uniform(0, 2 * math.pi)
            cx, cy = dx + r * math.cos(a), dy + r * math.sin(a)
        else:
            cx, cy = rnd.choice(big)[:2]
        width = max(1, round(1.2 * k))
        for _ in range(rnd.randint(3, 7)):
            points = _walk(
                rnd,
                (cx, cy),
                rnd.uniform(0, 2 * math.pi),
                0.008 * frame.radius,
                rnd.randint(15, 45),
                0.7,
            )
            draw.line(points, fill=rnd.randint(170, 230), width=width, joint="curve")


def _draw_exudates(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    frame: _Frame,
    n_clusters: int,
    macula: tuple[float, float],
    disc: tuple[float, float],
) -> None:
    """Hard exudates: clusters or circinate rings of small yellow flecks near the macula."""
    k = frame.scale
    for cu, cv in _posterior_points(rng, n_clusters, macula, 0.2, disc):
        n = 4 + int(rng.poisson(18))
        if rng.random() < 0.4:  # circinate ring around a leaking focus
            ring = rng.uniform(0.04, 0.09)
            t = rng.uniform(0, 2 * np.pi, n)
            rr = ring * (1 + rng.normal(0, 0.12, n))
            pts = np.stack([cu + rr * np.cos(t), cv + rr * np.sin(t)], axis=1)
        else:
            pts = rng.normal((cu, cv), 0.035, size=(n, 2))
        for u, v in pts:
            _dot(draw, *frame.px(u, v), rng.uniform(1.0, 4.0) * k, int(rng.integers(170, 256)))


def _draw_cotton_wool(
    rng: np.random.Generator,
    draw: ImageDraw.ImageDraw,
    frame: _Frame,
    n: int,
    disc: tuple[float, float],
) -> None:
    """Cotton-wool spots: pale fluffy patches along the arcades, near the disc."""
    k = frame.scale
    for u, v in _posterior_points(rng, n, (disc[0] - 0.2, disc[1]), 0.3, disc):
        x, y = frame.px(u, v)
        for _ in range(int(rng.integers(2, 5))):
            ox, oy = rng.normal(0, 3.0 * k, 2)
            _dot(draw, x + ox, y + oy, rng.uniform(4.0, 9.0) * k, int(rng.integers(150, 230)))


# ---------------------------------------------------------------- image formation


@dataclass(frozen=True)
class _Camera:
    """One photograph's nuisance settings, all drawn before any size-dependent array so a
    seed gives the same picture at every image size."""

    vignetting: float
    vignetting_power: float
    gradient: tuple[float, float]
    gain: tuple[float, float, float]
    gamma: float
    noise: float
    blur: float  # pixels at REFERENCE_SIZE
    angle: float  # degrees
    aspect: float
    offset: int  # -1, 0 or 1: where the fundus sits in a wide frame
    clip: float  # half-height of the sensor in units of R (>= 1: not clipped)

    @classmethod
    def draw(cls, rng: np.random.Generator) -> _Camera:
        """Random settings spanning the variation of the cameras in the Kaggle data."""
        gain = np.exp(rng.normal(0.0, 0.18)) * (1.0 + rng.normal(0, 0.07, 3))
        blur = rng.choice([0.0, 0.0, rng.uniform(0.3, 1.0), rng.uniform(1.0, 2.5)])
        upside_down = rng.random() < 0.08  # some cameras store the picture upside down
        return cls(
            vignetting=rng.uniform(0.35, 0.75),
            vignetting_power=rng.uniform(1.0, 1.8),
            gradient=tuple(rng.normal(0, 0.12, 2)),
            gain=tuple(gain),
            gamma=rng.uniform(0.8, 1.25),
            noise=rng.uniform(0.005, 0.02),
            blur=float(blur),
            angle=float(rng.normal(0, 8)) + 180.0 * upside_down,
            aspect=float(rng.choice(CAMERA_ASPECTS, p=CAMERA_ASPECT_P)),
            offset=int(rng.integers(-1, 2)),
            clip=rng.uniform(0.82, 0.95) if rng.random() < 0.35 else 2.0,
        )


def _illumination(cam: _Camera, frame: _Frame) -> np.ndarray:
    """Camera illumination field: radial vignetting times a linear gradient."""
    s = frame.size
    yy, xx = np.ogrid[:s, :s]
    u = ((xx - frame.cx) / frame.radius).astype(np.float32)
    v = ((yy - frame.cy) / frame.radius).astype(np.float32)
    r2 = u * u + v * v
    field = 1.0 - cam.vignetting * r2**cam.vignetting_power
    field = field * (1.0 + cam.gradient[0] * u + cam.gradient[1] * v)
    return np.clip(field, 0.05, None).astype(np.float32)


def _field_stop(cam: _Camera, frame: _Frame) -> Image.Image:
    """The camera's field stop as an 8-bit mask: a soft-edged circle, sometimes clipped at
    top and bottom by the sensor (applied after rotation, so the clip stays horizontal)."""
    s = frame.size
    yy, xx = np.ogrid[:s, :s]
    d = np.sqrt((xx - s / 2) ** 2 + (yy - s / 2) ** 2).astype(np.float32)
    edge = max(1.0, 1.5 * frame.scale)
    mask = np.clip((frame.radius - d) / edge + 0.5, 0, 1)
    half = cam.clip * frame.radius
    mask = mask * np.clip((half - np.abs(yy - s / 2)) / edge + 0.5, 0, 1)
    return Image.fromarray((mask * 255 + 0.5).astype(np.uint8))


def _expose(
    cam: _Camera, noise_rng: np.random.Generator, img: np.ndarray, frame: _Frame
) -> Image.Image:
    """Exposure (vignetting, gradient, gain), colour cast, sensor noise, gamma -> 8-bit."""
    field = _illumination(cam, frame)[..., None]
    img *= field * np.array(cam.gain, np.float32)
    noise = noise_rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None]
    img += noise * np.float32(cam.noise) * field
    np.clip(img, 0.0, 1.0, out=img)
    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
    lut = (255 * (np.arange(256) / 255.0) ** cam.gamma + 0.5).astype(np.uint8).tolist()
    return out.point(lut * 3)


def _frame_into_camera(cam: _Camera, square: Image.Image, frame: _Frame) -> Image.Image:
    """Defocus, rotate, apply the black field stop, then paste the fundus into a camera
    frame of the camera's aspect ratio (black borders)."""
    size = square.width
    blur = cam.blur * frame.scale
    if blur > 0.05:
        square = square.filter(ImageFilter.GaussianBlur(blur))
    square = square.rotate(cam.angle, resample=Image.Resampling.BILINEAR)
    width = int(round(size * cam.aspect))
    canvas = Image.new("RGB", (width, size), (0, 0, 0))
    offset = (width - size) // 2 + cam.offset * ((width - size) // 8)
    canvas.paste(square, (offset, 0), _field_stop(cam, frame))
    return canvas


def render_fundus(
    size: int, grade: int, eye: str, seed: int | Sequence[int], pigment: float | None = None
) -> Image.Image:
    """One synthetic fundus photograph (RGB, height `size`, width size * camera aspect).

    Anatomy, texture, lesions, camera and sensor noise use independent random streams
    spawned from `seed`: the same seed at two grades differs only in the lesions (what the
    tests measure), and at two sizes shows the same eye.
    """
    if grade not in range(N_GRADES):
        raise ValueError(f"grade must be 0..{N_GRADES - 1}, got {grade}")
    if eye not in EYES:
        raise ValueError(f"eye must be one of {EYES}, got {eye!r}")
    anatomy, texture, lesions, camera, noise = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    rnd_anatomy = random.Random(int(anatomy.integers(2**63)))
    rnd_lesions = random.Random(int(lesions.integers(2**63)))
    cam = _Camera.draw(camera)
    radius = FUNDUS_RADIUS * size * anatomy.uniform(0.97, 1.03)
    frame = _Frame(
        size,
        size / 2 + anatomy.normal(0, 0.01 * size),
        size / 2 + anatomy.normal(0, 0.01 * size),
        radius,
    )
    disc = (DISC_CENTRE[0] + anatomy.normal(0, 0.03), DISC_CENTRE[1] + anatomy.normal(0, 0.03))
    if pigment is None:
        pigment = float(anatomy.beta(2, 3))

    img = _background(texture, frame, pigment)
    macula = _macula(anatomy, img, frame)
    _optic_disc(anatomy, img, frame, disc)
    segments = _vessel_segments(rnd_anatomy, frame, disc)
    vessels, vdraw = _mask(size)
    _draw_segments(vdraw, segments, VENOUS_DILATION[grade])
    _apply_mask(img, vessels, 0.5 * frame.scale, _darken, VESSEL_TINT)

    counts = lesion_counts(grade, lesions)
    red, rdraw = _mask(size)
    _draw_red_lesions(lesions, rdraw, frame, counts, macula, disc)
    _draw_new_vessels(rnd_lesions, rdraw, frame, counts["new_vessel_tufts"], disc, segments)
    _apply_mask(img, red, 0.6 * frame.scale, _darken, RED_LESION_TINT)
    exudates, edraw = _mask(size)
    _draw_exudates(lesions, edraw, frame, counts["exudate_clusters"], macula, disc)
    _apply_mask(img, exudates, 0.5 * frame.scale, _mix, EXUDATE_COLOUR)
    cotton, cdraw = _mask(size)
    _draw_cotton_wool(lesions, cdraw, frame, counts["cotton_wool_spots"], disc)
    _apply_mask(img, cotton, 3.0 * frame.scale, _mix, COTTON_WOOL_COLOUR, 0.7)

    square = _expose(cam, noise, img, frame)
    if eye == "left":  # the optic disc sits nasally: mirrored between the eyes
        square = square.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _frame_into_camera(cam, square, frame)


# ---------------------------------------------------------------- dataset writer


def _write_one(job: tuple[Path, int, int, str, int, int, float]) -> None:
    """Render and save one eye (a top-level function so worker processes can run it)."""
    path, size, grade, eye, seed, patient, pigment = job
    image = render_fundus(size, grade, eye, (seed, patient, EYES.index(eye)), pigment)
    image.save(path, format="JPEG", quality=JPEG_QUALITY)


def generate_dr(
    out_dir: str | Path,
    n: int,
    size: int = 512,
    seed: int = 0,
    class_balance: Sequence[float] = KAGGLE_BALANCE,
    *,
    workers: int = 1,
) -> Path:
    """Write n synthetic fundus photos (n // 2 patients, both eyes) in Kaggle 2015 layout.

    out_dir gets ``trainLabels.csv`` (image,level; rows ``<patient>_left``/``_right``, written
    by `dr.write_kaggle_labels`, the format's owner) and ``<patient>_<eye>.jpeg`` files whose
    short side is `size` px (width up to 1.5x, black borders like camera images). Per-eye
    grades follow `class_balance` exactly (largest remainder; every grade with positive weight
    appears once n allows). `workers` > 1 renders in spawned processes (scripts calling it
    need the ``if __name__ == "__main__":`` guard); the bytes do not depend on it.
    """
    if n < 2:
        raise ValueError(f"n must be >= 2 (one patient, two eyes), got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_patients = n // 2
    grades = assign_grades(n_patients, class_balance, seed)
    pigments = np.random.default_rng([seed, 0xC0]).beta(2, 3, n_patients)
    rows, jobs = [], []
    for p in range(n_patients):
        patient = p + 1
        for e, eye in enumerate(EYES):
            name = f"{patient}_{eye}"
            rows.append((name, int(grades[p, e])))
            jobs.append(
                (
                    out / f"{name}{IMAGE_SUFFIX}",
                    size,
                    int(grades[p, e]),
                    eye,
                    seed,
                    patient,
                    float(pigments[p]),
                )
            )
    if workers > 1:
        with get_context("spawn").Pool(workers) as pool:
            pool.map(_write_one, jobs, chunksize=8)
    else:
        for job in jobs:
            _write_one(job)
    write_kaggle_labels(out, rows)  # last, so a complete CSV means complete images
    return out
