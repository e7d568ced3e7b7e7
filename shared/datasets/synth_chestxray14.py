"""Synthetic NIH ChestX-ray14: frontal chest radiographs with 14 findings, in the real layout.

`generate_chestxray14` writes what NIH ships: ``Data_Entry_2017.csv`` (the real columns,
including the header's unquoted commas and trailing empty column), grayscale PNGs in
``images_001/images/``, ``images_002/images/``, ... and the patient-wise ``train_val_list.txt``
/ ``test_list.txt``, so `chestxray14.load_chestxray14` reads it unchanged.

Labels: every finding's frequency follows the real set (Infiltration 17.7% ... Hernia 0.2%,
exact counts by ranking a latent score), findings co-occur through a shared per-image
severity, per-patient persistence (follow-up images of a patient share findings) and groups
that travel together in the real set (effusion / cardiomegaly / oedema / atelectasis; the
airspace opacities), which leaves about half the images "No Finding". Patients have one to a
dozen images (geometric, mean ~3) and keep their anatomy between them.

Pictures (PA view, patient's right on the image left): soft-tissue body, dark lung fields cut
by domed hemidiaphragms with sharp costophrenic angles, mediastinum and spine, heart shadow
and aortic knob, posterior ribs, clavicles, vascular markings fanning from the hila, gastric
bubble. Each finding changes what a radiologist would look for: Cardiomegaly a wide heart;
Effusion fluid filling a lung base with a meniscus (blunted angle); Mass one large and Nodule
small round opacities; Infiltration faint patches, Pneumonia a patchy cloud, Consolidation a
dense lobar region; Atelectasis a plate-like band and a raised hemidiaphragm; Pneumothorax a
marking-free dark rim with a pleural line; Edema perihilar haze, prominent vessels and Kerley
lines; Emphysema dark hyperinflated lungs with flat low diaphragms and sparse markings;
Fibrosis a reticular net; Pleural_Thickening a dense band along the chest wall or apex;
Hernia a retrocardiac opacity with an air-fluid level. Exposure, contrast, position, rotation,
patient build and noise vary, so findings overlap with normal variation: a RandomForest on
32 px pixels reaches AUC 0.7-0.95 per finding (README), leaving a CNN room to do better.
Findings draw from their own random stream, so an image with and without a finding differs
only by the finding. Everything is numpy on the full grid (no per-pixel Python): a few
hundred 128 px images take seconds.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from shared.atomic import atomic_path

from .chestxray14 import FINDINGS, IMAGE_DIR, LABEL_FILES, NO_FINDING, TEST_LIST, TRAIN_VAL_LIST

# Images with each finding in the real set (112,120 images; 60,361 "No Finding").
REAL_IMAGES = 112_120
REAL_FINDING_COUNTS = dict(
    zip(
        FINDINGS,
        (11559, 2776, 13317, 19894, 5782, 6331, 1431, 5302, 4667, 2303, 2516, 1686, 3385, 227),
        strict=True,
    )
)
# Findings that co-occur in the real set share a latent group factor.
GROUPS = (
    ("Cardiomegaly", "Effusion", "Edema", "Atelectasis"),
    ("Infiltration", "Pneumonia", "Consolidation"),
    ("Mass", "Nodule"),
    ("Emphysema", "Fibrosis", "Pleural_Thickening", "Pneumothorax"),
    ("Hernia",),
)
# Latent loadings: image severity, patient persistence, group, own noise.
SEVERITY_WEIGHT, PATIENT_WEIGHT, GROUP_WEIGHT = 0.75, 0.6, 0.45
OPACITY_ABOVE_TISSUE = 0.25  # share by which a lesion may outshine the tissue it replaces
MEAN_IMAGES_PER_PATIENT = 3.0
MAX_IMAGES_PER_PATIENT = 12
TEST_PATIENT_SHARE = 0.23  # the official test list holds 22.8% of the images
IMAGES_PER_FOLDER = 100  # images_001/ ... images_012/, at most 12 folders as in the real set
MAX_FOLDERS = 12
RGBA_SHARE = 0.02  # the real set has a few RGBA PNGs
CSV_HEADER = (
    "Image Index",
    "Finding Labels",
    "Follow-up #",
    "Patient ID",
    "Patient Age",
    "Patient Gender",
    "View Position",
    "OriginalImage[Width",  # the real header's unquoted commas split these two columns
    "Height]",
    "OriginalImagePixelSpacing[x",
    "y]",
    "",  # and every row ends with a comma
)
REAL_SIDE_PX, REAL_SPACING_MM = 1024, 0.143


# ---------------------------------------------------------------- labels and patients


def images_per_patient(n: int, rng: np.random.Generator) -> np.ndarray:
    """Image counts per patient summing to n: geometric (1..12, mean ~3), >= 3 patients."""
    counts: list[int] = []
    while sum(counts) < n:
        counts.append(min(int(rng.geometric(1 / MEAN_IMAGES_PER_PATIENT)), MAX_IMAGES_PER_PATIENT))
    counts[-1] -= sum(counts) - n
    while len(counts) < min(3, n):  # tiny sets: split the largest patient
        k = int(np.argmax(counts))
        counts[k] -= 1
        counts.append(1)
    return np.asarray(counts, np.int64)


def assign_findings(patients: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(N, 14) 0/1 findings for images of the given patient indices.

    A latent score per image and finding (severity + patient persistence + group + noise)
    is ranked per finding and its top `count` images get it, so every finding's frequency
    follows the real one (largest-remainder rounding; at least one image each when n >= 50).
    """
    n = len(patients)
    n_patients = int(patients.max()) + 1
    group_of = np.array([next(g for g, names in enumerate(GROUPS) if f in names)
                         for f in FINDINGS])
    severity = rng.standard_normal((n, 1))
    persistent = rng.standard_normal((n_patients, len(FINDINGS)))[patients]
    group = rng.standard_normal((n, len(GROUPS)))[:, group_of]
    latent = (SEVERITY_WEIGHT * severity + PATIENT_WEIGHT * persistent + GROUP_WEIGHT * group
              + rng.standard_normal((n, len(FINDINGS))))
    labels = np.zeros((n, len(FINDINGS)), np.int64)
    for k, name in enumerate(FINDINGS):
        count = int(round(n * REAL_FINDING_COUNTS[name] / REAL_IMAGES))
        count = max(count, 1 if n >= 50 else 0)
        labels[np.argsort(-latent[:, k], kind="stable")[:count], k] = 1
    return labels


def test_patients(n_patients: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean per patient: in the official test list (~23% of patients, at least one, and
    at least two left for train and validation)."""
    want = min(max(1, int(round(TEST_PATIENT_SHARE * n_patients))), n_patients - 2)
    chosen = np.zeros(n_patients, bool)
    chosen[rng.permutation(n_patients)[:want]] = True
    return chosen


# ---------------------------------------------------------------- drawing primitives


@dataclass(frozen=True)
class _Canvas:
    """Normalised coordinates of the image grid: u right, v down, both -1..1."""

    size: int
    u: np.ndarray
    v: np.ndarray
    px: float  # one pixel in normalised units

    @classmethod
    def of(cls, size: int, shift: np.ndarray, zoom: float, angle: float) -> _Canvas:
        """Grid seen through a small patient shift, zoom and rotation."""
        c = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
        yy, xx = np.meshgrid(c, c, indexing="ij")
        ca, sa = math.cos(angle), math.sin(angle)
        x, y = xx - shift[0], yy - shift[1]
        u = (ca * x + sa * y) / zoom
        v = (ca * y - sa * x) / zoom
        return cls(size, u.astype(np.float32), v.astype(np.float32), 2.0 / size / zoom)


def _soft(d: np.ndarray, width: float) -> np.ndarray:
    """0..1 ramp: 1 where d < 0 (inside), 0 where d > 0, over `width` normalised units."""
    return np.clip(0.5 - d / max(width, 1e-6), 0.0, 1.0).astype(np.float32)


def _disc(
    cv: _Canvas, cx: float, cy: float, rx: float, ry: float, edge: float, rim: float = 1.0
) -> np.ndarray:
    """Soft ellipse alpha; `rim` (a number or a per-pixel array) scales the radius."""
    d = np.sqrt(((cv.u - cx) / rx) ** 2 + ((cv.v - cy) / ry) ** 2) - rim
    return _soft(d * min(rx, ry), edge)


def _segment(
    cv: _Canvas, p: tuple[float, float], q: tuple[float, float], width: float, edge: float
) -> np.ndarray:
    """Soft capsule alpha from p to q of half-width `width`."""
    vx, vy = q[0] - p[0], q[1] - p[1]
    t = np.clip(((cv.u - p[0]) * vx + (cv.v - p[1]) * vy) / (vx * vx + vy * vy + 1e-9), 0, 1)
    d = np.hypot(cv.u - p[0] - t * vx, cv.v - p[1] - t * vy) - width
    return _soft(d, edge)


def _noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """(size, size) smooth noise with features ~size/cells wide, roughly unit amplitude."""
    grid = rng.standard_normal((cells + 1, cells + 1)).astype(np.float32)
    return np.asarray(
        Image.fromarray(grid, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    )


# ---------------------------------------------------------------- anatomy


@dataclass
class _Anatomy:
    """Per-patient build plus per-image changes the findings make to it."""

    width: float  # thorax half-width
    apex: float  # lung apex height
    dome: tuple[float, float]  # hemidiaphragm height (image left, image right)
    dome_height: float  # how much the diaphragm domes above its lateral ends
    heart: tuple[float, float]  # heart half-width and half-height
    lung_dark: float  # how much darker than soft tissue the lungs are
    markings: float  # amplitude of the vascular markings
    female: bool


def _patient_anatomy(rng: np.random.Generator) -> _Anatomy:
    dome = float(rng.uniform(0.38, 0.52))
    return _Anatomy(
        width=float(rng.uniform(0.70, 0.82)),
        apex=float(rng.uniform(-0.78, -0.68)),
        dome=(dome - 0.02, dome + 0.03),  # the left hemidiaphragm (image right) sits lower
        dome_height=float(rng.uniform(0.10, 0.15)),
        heart=(float(rng.uniform(0.25, 0.32)), float(rng.uniform(0.23, 0.29))),
        lung_dark=float(rng.uniform(0.30, 0.44)),
        markings=float(rng.uniform(0.05, 0.08)),
        female=bool(rng.random() < 0.43),
    )


def _lung_centre(a: _Anatomy, side: int) -> float:
    """Horizontal centre of the lung on `side` (-1 image left, +1 image right)."""
    return side * 0.47 * a.width


def _lung_level(cv: _Canvas, a: _Anatomy, side: int, scale: float = 1.0,
                anchor: tuple[float, float] | None = None) -> np.ndarray:
    """Superellipse level of one lung (< 1 inside), optionally shrunk by `scale` towards
    `anchor` (a collapsed lung). The domed diaphragm cut is separate (`_below_dome`)."""
    cu = _lung_centre(a, side)
    half_w, top, bottom = 0.5 * a.width, a.apex, a.dome[side > 0] + 0.08
    cy, half_h = (top + bottom) / 2, (bottom - top) / 2
    u, v = cv.u, cv.v
    if anchor is not None:
        u = anchor[0] + (u - anchor[0]) / scale
        v = anchor[1] + (v - anchor[1]) / scale
    x = np.abs(u - cu) / half_w
    y = (v - cy) / half_h
    # flatter medial and lateral walls, rounded apex
    return x**2.6 + np.where(y < 0, np.abs(y) ** 2.0, np.abs(y) ** 4.0)


def _dome_line(cv: _Canvas, a: _Anatomy, side: int) -> np.ndarray:
    """Height of the hemidiaphragm under each column (domed, lowest laterally)."""
    cu = _lung_centre(a, side)
    x = np.clip((cv.u - cu) / (0.55 * a.width), -1.3, 1.3)
    return a.dome[side > 0] - a.dome_height * (1 - x**2)


def _lung_mask(cv: _Canvas, a: _Anatomy, side: int) -> np.ndarray:
    """Soft alpha of one aerated lung field: inside the superellipse and above the dome."""
    inside = _soft(_lung_level(cv, a, side) - 1.0, 6 * cv.px)
    above = _soft(cv.v - _dome_line(cv, a, side), 1.5 * cv.px)
    return inside * above * (np.sign(cv.u) == side)


# ---------------------------------------------------------------- findings


@dataclass
class _Scene:
    """Layers a finding may modify before they are composited."""

    cv: _Canvas
    a: _Anatomy
    rng: np.random.Generator
    density: np.ndarray  # opacities replacing lung air (capped a little above soft tissue)
    overlay: np.ndarray  # attenuation added on top, uncapped (lines, retrocardiac masses)
    lucency: np.ndarray  # extra darkening of lung (emphysema, pneumothorax)
    marking_gain: np.ndarray  # multiplies vascular markings (0 = absent)
    lungs: tuple[np.ndarray, np.ndarray]  # aerated masks (image left, image right)
    state: dict[str, int] = field(default_factory=dict)  # choices shared by both phases

    def side(self) -> int:
        return int(self.rng.choice((-1, 1)))

    def lung(self, side: int) -> np.ndarray:
        return self.lungs[side > 0]

    def spot(self, side: int, zone: tuple[float, float] = (0.15, 0.85)) -> tuple[float, float]:
        """A point inside the lung on `side`, vertical position as a fraction apex..dome."""
        a = self.a
        t = self.rng.uniform(*zone)
        v = a.apex + t * (a.dome[side > 0] - a.apex) + 0.05
        u = _lung_centre(a, side) + side * self.rng.uniform(-0.25, 0.3) * a.width * 0.5
        return float(u), float(v)


def _atelectasis_geometry(s: _Scene) -> None:
    """Volume loss pulls one hemidiaphragm up; the band comes later on that side."""
    side = s.side()
    s.state["atelectasis_side"] = side
    dome = list(s.a.dome)
    dome[side > 0] -= s.rng.uniform(0.05, 0.09)
    s.a.dome = (dome[0], dome[1])


def _atelectasis(s: _Scene) -> None:
    """A plate-like (discoid) band at the base on the side whose diaphragm rose."""
    side = s.state["atelectasis_side"]
    u, v = s.spot(side, (0.6, 0.85))
    tilt = s.rng.uniform(-0.08, 0.08)
    half = s.rng.uniform(0.12, 0.2)
    band = _segment(s.cv, (u - half, v - tilt), (u + half, v + tilt), 0.022, 2 * s.cv.px)
    s.density += 0.3 * band * s.lung(side)


def _cardiomegaly_geometry(s: _Scene) -> None:
    w, h = s.a.heart
    s.a.heart = (w * s.rng.uniform(1.15, 1.35), h * s.rng.uniform(1.0, 1.1))


def _effusion(s: _Scene) -> None:
    sides = (-1, 1) if s.rng.random() < 0.3 else (s.side(),)
    for side in sides:
        a, cv = s.a, s.cv
        level = a.dome[side > 0] - s.rng.uniform(0.03, 0.18)
        lateral = np.clip(side * (cv.u - _lung_centre(a, side)) / (0.5 * a.width), -1, 1.3)
        meniscus = level - 0.22 * np.clip(lateral, 0, None) ** 2 + 0.04 * lateral
        fluid = 0.85 * np.clip((cv.v - meniscus) / 0.07 + 0.25, 0, 1)  # denser at the base
        s.density += fluid * s.lung(side)  # capped at soft-tissue density when composited


def _patches(s: _Scene, side: int, centre: tuple[float, float], radius: float,
             cells: int, cut: float) -> np.ndarray:
    """Ill-defined patchy opacity: smooth noise above `cut` under a Gaussian envelope."""
    env = np.exp(-((s.cv.u - centre[0]) ** 2 + (s.cv.v - centre[1]) ** 2) / (2 * radius**2))
    tex = _noise(s.rng, s.cv.size, cells)
    return np.clip(tex - cut + 1.2 * env - 0.6, 0, 1) * env * s.lung(side)


def _infiltration(s: _Scene) -> None:
    for _ in range(int(s.rng.integers(2, 4))):
        side = s.side()
        s.density += 0.2 * _patches(s, side, s.spot(side, (0.3, 0.8)), 0.16, 10, 0.0)


def _mass(s: _Scene) -> None:
    side = s.side()
    u, v = s.spot(side, (0.2, 0.75))
    r = s.rng.uniform(0.09, 0.14)
    wob = 1 + 0.08 * _noise(s.rng, s.cv.size, 4)
    s.density += s.rng.uniform(0.26, 0.34) * _disc(s.cv, u, v, r, r, 3 * s.cv.px, wob)


def _nodule(s: _Scene) -> None:
    for _ in range(int(s.rng.integers(1, 4))):
        side = s.side()
        u, v = s.spot(side)
        r = max(s.rng.uniform(0.035, 0.055), 1.3 * s.cv.px)
        s.density += s.rng.uniform(0.28, 0.36) * _disc(s.cv, u, v, r, r, 1.2 * s.cv.px)


def _pneumonia(s: _Scene) -> None:
    side = s.side()
    centre = s.spot(side, (0.45, 0.85))
    s.density += 0.32 * _patches(s, side, centre, 0.2, 7, -0.2)


def _pneumothorax(s: _Scene) -> None:
    side = s.side()
    a, cv = s.a, s.cv
    hilum = (_lung_centre(a, side) - side * 0.12, a.dome[side > 0] - 0.1)
    collapsed = _lung_level(cv, a, side, s.rng.uniform(0.62, 0.8), hilum)
    rim = s.lung(side) * (1 - _soft(collapsed - 1.0, 3 * cv.px))
    s.marking_gain *= 1 - rim
    s.lucency += 0.1 * rim
    s.overlay += 0.2 * s.lung(side) * _soft(np.abs(collapsed - 1.0) * 0.35 - 0.7 * cv.px,
                                             cv.px)


def _consolidation(s: _Scene) -> None:
    side = s.side()
    u, v = s.spot(side, (0.55, 0.85))
    blob = _disc(s.cv, u, v, s.rng.uniform(0.16, 0.24), s.rng.uniform(0.14, 0.2), 4 * s.cv.px)
    lobe = _soft(-(s.cv.v - (v - 0.12) - 0.35 * side * (s.cv.u - u)), 3 * s.cv.px)  # fissure
    s.density += 0.22 * blob * lobe * s.lung(side)


def _edema(s: _Scene) -> None:
    a, cv = s.a, s.cv
    for side in (-1, 1):
        hu, hv = side * 0.2, a.apex + 0.55 * (a.dome[side > 0] - a.apex)
        haze = np.exp(-((cv.u - hu) ** 2 / 0.05 + (cv.v - hv) ** 2 / 0.08))
        s.density += 0.12 * haze * s.lung(side)
        for _ in range(int(s.rng.integers(3, 6))):  # Kerley B lines at the lateral bases
            v = a.dome[side > 0] - s.rng.uniform(0.05, 0.25)
            u0 = side * (a.width - 0.04)
            line = _segment(cv, (u0, v), (u0 - side * 0.09, v), 0.6 * cv.px, cv.px)
            s.density += 0.22 * line * s.lung(side)
    s.marking_gain *= 1.4


def _emphysema_geometry(s: _Scene) -> None:
    """Hyperinflation: low, flat diaphragms and a narrow vertical heart."""
    a = s.a
    drop = s.rng.uniform(0.03, 0.06)
    a.dome = (a.dome[0] + drop, a.dome[1] + drop)
    a.dome_height *= 0.5
    a.heart = (a.heart[0] * 0.85, a.heart[1])


def _emphysema(s: _Scene) -> None:
    s.lucency += 0.04
    s.marking_gain *= 0.6


def _fibrosis(s: _Scene) -> None:
    cv, rng = s.cv, s.rng
    warp = 0.04 * _noise(rng, cv.size, 5)
    freq = rng.uniform(13, 17)
    net = np.maximum(np.abs(np.sin(np.pi * freq * (cv.u + warp))),
                     np.abs(np.sin(np.pi * freq * (cv.v - warp))))
    lines = np.clip((net - 0.8) / 0.2, 0, 1)
    lower = _soft(-(cv.v - (s.a.apex + 0.4 * (s.a.dome[0] - s.a.apex))), 0.15)
    periphery = np.clip(np.abs(cv.u) / s.a.width - 0.25, 0, 1) * 1.6
    s.density += 0.13 * lines * lower * periphery * (s.lungs[0] + s.lungs[1])


def _fibrosis_geometry(s: _Scene) -> None:
    """Volume loss: both hemidiaphragms a little higher."""
    s.a.dome = (s.a.dome[0] - 0.04, s.a.dome[1] - 0.04)


def _pleural_thickening(s: _Scene) -> None:
    """A dense, slightly lumpy band inside the chest wall: an apical cap or lateral."""
    cv, a = s.cv, s.a
    side = s.side()
    lumpy = 0.62 + 0.1 * _noise(s.rng, cv.size, 6)
    band = _soft(lumpy - _lung_level(cv, a, side), 0.05) * s.lung(side)
    if s.rng.random() < 0.5:  # apical cap
        where = _soft(cv.v - (a.apex + 0.3), 0.05)
    else:  # along the lateral wall, above the costophrenic angle
        where = _soft(-side * (cv.u - _lung_centre(a, side)), 0.05)
    s.density += 0.28 * band * where


def _hernia(s: _Scene) -> None:
    a, cv = s.a, s.cv
    u, v, r = 0.04, a.dome[1] - 0.16, s.rng.uniform(0.09, 0.12)
    sac = _disc(cv, u, v, r * 1.1, r, 2 * cv.px)
    air = sac * _soft(cv.v - (v - 0.2 * r), cv.px)  # air cap above the fluid level
    s.overlay += 0.12 * sac - 0.2 * air


# Phase 1 changes the anatomy (heart, diaphragm) before the lungs are drawn; phase 2 paints
# on the lungs.
_GEOMETRY_PAINTERS = {
    "Atelectasis": _atelectasis_geometry,
    "Cardiomegaly": _cardiomegaly_geometry,
    "Emphysema": _emphysema_geometry,
    "Fibrosis": _fibrosis_geometry,
}
_FINDING_PAINTERS = {
    "Atelectasis": _atelectasis,
    "Cardiomegaly": lambda s: None,  # the wide heart is all of it
    "Effusion": _effusion,
    "Infiltration": _infiltration,
    "Mass": _mass,
    "Nodule": _nodule,
    "Pneumonia": _pneumonia,
    "Pneumothorax": _pneumothorax,
    "Consolidation": _consolidation,
    "Edema": _edema,
    "Emphysema": _emphysema,
    "Fibrosis": _fibrosis,
    "Pleural_Thickening": _pleural_thickening,
    "Hernia": _hernia,
}


# ---------------------------------------------------------------- the radiograph


def _ribs(cv: _Canvas, a: _Anatomy, phase: float) -> np.ndarray:
    """Posterior ribs: curved bands, rising from the spine then falling laterally."""
    x = np.abs(cv.u)
    curve = -0.25 * x + 0.55 * x**2
    bands = np.cos(2 * np.pi * ((cv.v - curve) / 0.115 + phase))
    region = _soft(x - a.width, 0.05) * _soft(-(cv.v - a.apex + 0.1), 0.05)
    region *= _soft(cv.v - max(a.dome) - 0.05, 0.05) * _soft(0.08 - x, -0.05)
    return np.clip((bands - 0.25) / 0.5, 0, 1) * region


def _markings(cv: _Canvas, a: _Anatomy, rng: np.random.Generator) -> np.ndarray:
    """Vessels fanning out of both hila and thinning towards the periphery."""
    out = np.zeros_like(cv.u)
    for side in (-1, 1):
        hu, hv = side * 0.18, a.apex + 0.58 * (a.dome[side > 0] - a.apex)
        du, dv = cv.u - hu, cv.v - hv
        r = np.sqrt(du * du + dv * dv)
        angle = np.arctan2(dv, du * side)
        wobble = 2.5 * _noise(rng, cv.size, 6)
        rays = np.clip(np.cos(rng.uniform(14, 20) * angle + wobble + 3 * r), 0, 1) ** 6
        out += rays * np.exp(-r / 0.35) + 0.9 * np.exp(-(r / 0.07) ** 2)
    return out


def render_radiograph(
    findings: Sequence[int], size: int, anatomy_seed: Sequence[int] | int,
    image_seed: Sequence[int] | int,
) -> np.ndarray:
    """One synthetic frontal chest radiograph: (size, size) uint8 grayscale.

    `findings` are indices into FINDINGS; `anatomy_seed` fixes the patient's build (shared
    by their follow-up images), `image_seed` the positioning, exposure and lesions.
    """
    unknown = [k for k in findings if k not in range(len(FINDINGS))]
    if unknown:
        raise ValueError(f"finding indices must be 0..{len(FINDINGS) - 1}, got {unknown}")
    a = _patient_anatomy(np.random.default_rng(anatomy_seed))
    rng = np.random.default_rng(image_seed)
    lesion_rng = np.random.default_rng(rng.integers(2**63))  # findings never shift the rest
    cv = _Canvas.of(size, rng.normal(0, 0.03, 2), float(np.exp(rng.normal(0, 0.04))),
                    float(rng.normal(0, 0.03)))
    names = [FINDINGS[k] for k in findings]
    zeros = np.zeros_like(cv.u)
    scene = _Scene(
        cv, a, lesion_rng, zeros.copy(), zeros.copy(), zeros.copy(), np.ones_like(cv.u),
        (zeros, zeros),
    )
    for name in names:
        if name in _GEOMETRY_PAINTERS:
            _GEOMETRY_PAINTERS[name](scene)
    scene.lungs = (_lung_mask(cv, a, -1), _lung_mask(cv, a, 1))
    for name in names:
        _FINDING_PAINTERS[name](scene)
    lungs = np.clip(scene.lungs[0] + scene.lungs[1], 0, 1)

    body = _soft(np.abs(cv.u) - (a.width + 0.13), 0.04) * _soft(-(cv.v + 0.97), 0.04)
    neck = _soft(np.abs(cv.u) - 0.24, 0.04) + _soft(-(cv.v + 0.8), 0.04)
    body *= np.clip(neck, 0, 1)
    img = 0.05 + 0.55 * body
    img += 0.06 * _noise(rng, size, 3) * body  # soft-tissue thickness
    if a.female:
        for side in (-1, 1):
            img += 0.08 * _disc(cv, side * 0.45 * a.width, a.dome[side > 0] + 0.02, 0.3, 0.2,
                                0.12)
    aerated = 1 - 0.3 * _soft(cv.v - (a.apex + 0.12), -0.1)  # apices overlapped by soft tissue
    img -= (a.lung_dark + scene.lucency) * lungs * aerated
    img += 0.12 * _soft(np.abs(cv.u) - 0.065, cv.px * 2) * body  # spine
    hw, hh = a.heart
    heart = _disc(cv, 0.12, max(a.dome) - a.dome_height - hh * 0.2, hw, hh, 4 * cv.px)
    knob = _disc(cv, 0.11, a.apex + 0.3, 0.075, 0.065, 3 * cv.px)
    img += (a.lung_dark + scene.lucency) * np.maximum(heart, knob) * lungs * aerated
    bubble = _disc(cv, 0.38 * a.width, a.dome[1] + 0.08, 0.1, 0.055, 3 * cv.px)
    img -= 0.18 * bubble * body
    img += 0.05 * _ribs(cv, a, float(rng.uniform(0, 1)))
    for side in (-1, 1):
        img += 0.16 * _segment(cv, (side * 0.09, a.apex - 0.02),
                               (side * (a.width - 0.1), a.apex - 0.13), 0.03, 2 * cv.px)
    img += a.markings * scene.marking_gain * _markings(cv, a, rng) * lungs
    air = (a.lung_dark + scene.lucency) * lungs * aerated * (1 - np.maximum(heart, knob))
    img += (np.minimum(scene.density, air * (1 + OPACITY_ABOVE_TISSUE)) + scene.overlay) * body

    # exposure: contrast, brightness, gamma, detector blur and noise, a side marker
    img = np.clip(img, 0, 1)
    img = img ** np.exp(rng.normal(0, 0.12))
    img = (img - 0.4) * np.exp(rng.normal(0, 0.1)) + 0.4 + rng.normal(0, 0.04)
    out = Image.fromarray(np.clip(img * 255, 0, 255).astype(np.uint8))
    arr = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(1.5, 4.0), (size, size))
    m = max(2, size // 24)
    arr[m : 2 * m, size - 3 * m : size - 2 * m] = 235  # the "L" lead marker, top right
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- dataset writer


def _save_png(path: Path, pixels: np.ndarray, rgba: bool) -> None:
    image = Image.fromarray(pixels, mode="L")
    if rgba:  # as a few real ones are: grey in RGB, opaque alpha
        image = image.convert("RGBA")
    image.save(path, format="PNG")


def _finding_text(row: np.ndarray) -> str:
    return "|".join(FINDINGS[k] for k in np.flatnonzero(row)) or NO_FINDING


def _write_list(path: Path, names: Sequence[str]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text("".join(f"{name}\n" for name in names))


def generate_chestxray14(out_dir: str | Path, n: int, size: int = 128, seed: int = 0) -> Path:
    """Write n synthetic radiographs at size px in the ChestX-ray14 layout; return out_dir.

    Images are ``<patient:08d>_<follow-up:03d>.png`` in ``images_001/images/`` ...
    (IMAGES_PER_FOLDER each, at most 12 folders); the CSV is written last, so a complete
    CSV means complete images. The bytes depend only on (n, size, seed).
    """
    if n < 3:
        raise ValueError(f"n must be >= 3 (train, validation and test patients), got {n}")
    if size < 32:
        raise ValueError(f"size must be >= 32 px, got {size}")
    out = Path(out_dir)
    rng = np.random.default_rng([seed, 0xC4E57])
    counts = images_per_patient(n, rng)
    patients = np.repeat(np.arange(len(counts)), counts)
    followups = np.concatenate([np.arange(c) for c in counts])
    labels = assign_findings(patients, rng)
    in_test = test_patients(len(counts), rng)
    ages = rng.integers(18, 90, len(counts))
    genders = ["F" if _patient_anatomy(np.random.default_rng((seed, p))).female else "M"
               for p in range(len(counts))]
    n_folders = min(MAX_FOLDERS, max(1, math.ceil(n / IMAGES_PER_FOLDER)))
    per_folder = math.ceil(n / n_folders)
    rgba = rng.random(n) < RGBA_SHARE
    spacing = f"{REAL_SPACING_MM * REAL_SIDE_PX / size:.3f}"
    rows, train_val, test = [], [], []
    for i, (p, f) in enumerate(zip(patients, followups, strict=True)):
        name = f"{p + 1:08d}_{f:03d}.png"
        folder = out / f"images_{i // per_folder + 1:03d}" / IMAGE_DIR
        folder.mkdir(parents=True, exist_ok=True)
        findings = np.flatnonzero(labels[i]).tolist()
        pixels = render_radiograph(findings, size, (seed, int(p)), (seed, int(p), int(f)))
        _save_png(folder / name, pixels, bool(rgba[i]))
        view = "AP" if findings and rng.random() < 0.5 else "PA"
        age = int(ages[p]) + int(f) // 4
        rows.append((name, _finding_text(labels[i]), int(f), int(p) + 1, age, genders[p], view,
                     size, size, spacing, spacing, ""))
        (test if in_test[p] else train_val).append(name)
    _write_list(out / TRAIN_VAL_LIST, train_val)
    _write_list(out / TEST_LIST, test)
    with atomic_path(out / LABEL_FILES[1]) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(CSV_HEADER)
        writer.writerows(rows)
    return out
