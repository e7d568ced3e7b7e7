"""Synthetic BloodMNIST: peripheral blood smear crops of 8 cell types, MedMNIST .npz layout.

`generate_bloodmnist` writes what MedMNIST ships (``{train,val,test}_{images,labels}``,
uint8 N x S x S x 3 images, N x 1 uint8 labels) with MedMNIST's split proportions and class
frequencies, so every reader and trainer runs unchanged without the download.

Each picture is a May-Grunwald-Giemsa-like smear: a pale pink background with red cells
(central pallor) and, centred with jitter, one cell whose class shows in the ways a
haematologist would name: size, nuclear shape (round, kidney, bi- or multi-lobed), nuclear
density and chromatin, cytoplasm colour and granules. Platelets are small purple fragments
without a nucleus. Nuisance variation (stain colour, rotation, position, size, blur, noise)
makes the classes overlap a little so a pixel-level baseline is well above chance but well
below a CNN. Drawing is vectorised numpy at 2x supersampling, then box-downsampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from .medmnist import write_medmnist_npz
from .registry import BLOODMNIST_CROP_PX, PBC_CAPTURE_PX, get_dataset_spec
from .synth_dr import largest_remainder

CLASS_NAMES = get_dataset_spec("bloodmnist").class_names
# Images per class and per split in the real BloodMNIST (17092 images).
REAL_CLASS_COUNTS = (1218, 3117, 1551, 2895, 1214, 1420, 3329, 2348)
SPLITS = ("train", "val", "test")
REAL_SPLIT_COUNTS = (11959, 1712, 3421)
SUPERSAMPLE = 2  # draw at 2x, then box-filter down: anti-aliased edges for free

BAND_NEUTROPHIL_P = 0.25  # unsegmented (band) forms count as neutrophils, as in the real set
BACKGROUND = (0.93, 0.86, 0.86)
RBC_COLOUR = (0.88, 0.62, 0.62)
RBC_RADIUS = (0.13, 0.17)  # fractions of the image side
SIZE_JITTER = 0.18  # sigma of the log zoom factor applied to every cell in an image
POSITION_JITTER = 0.07  # sigma of the main cell's offset from the centre, fraction of side
# Slide-to-slide stain variation (sigmas of log saturation/contrast, channel gain, offset).
SATURATION_SIGMA = 0.2
CONTRAST_SIGMA = 0.12
CAST_SIGMA = 0.035
BRIGHTNESS_SIGMA = 0.04


@dataclass(frozen=True)
class _Grid:
    """Pixel coordinates of the supersampled canvas (float32, broadcastable).

    ``size`` is the side of the square a dataset image covers, the scale every cell is drawn
    at; coordinates 0..size span that square, which sits at the centre of a canvas of
    ``shape`` (the square itself for a dataset image, a wider field for a raw capture),
    ``ox``/``oy`` canvas pixels from its left/top edge.
    """

    size: int
    x: np.ndarray
    y: np.ndarray
    ox: int = 0
    oy: int = 0

    @classmethod
    def of(cls, size: int, shape: tuple[int, int] | None = None,
           origin: tuple[int, int] = (0, 0)) -> _Grid:
        """Grid for a size x size square ``origin`` (x, y) px into a (height, width) canvas."""
        height, width = shape or (size, size)
        ox, oy = origin
        yy, xx = np.mgrid[:height, :width].astype(np.float32)
        return cls(size, xx - ox, yy - oy, ox, oy)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the canvas."""
        return self.x.shape


@dataclass(frozen=True)
class _Cell:
    """Where and how large the main cell is (supersampled pixels, radians)."""

    cx: float
    cy: float
    r: float
    angle: float


# ---------------------------------------------------------------- primitives


def _blob(
    g: _Grid,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    r: float,
    *,
    elong: float = 1.0,
    angle: float = 0.0,
    wobble: float = 0.05,
    edge: float = 1.0,
) -> np.ndarray:
    """Soft-edged alpha of an irregular ellipse: radius r along `angle` stretched by elong,
    rim perturbed by random low-order harmonics (cells are never perfect circles).

    Computed only on the blob's bounding square; zeros elsewhere.
    """
    harmonics = [(k, (wobble / k) * rng.normal(), rng.uniform(0, 2 * np.pi)) for k in (2, 3, 4)]
    reach = r * max(elong, 1.0) * (1.0 + sum(abs(a) for _, a, _ in harmonics)) + edge + 2
    height, width = g.shape
    alpha = np.zeros(g.shape, np.float32)
    cx_px, cy_px = cx + g.ox, cy + g.oy
    x0, x1 = max(0, int(cx_px - reach)), min(width, int(cx_px + reach) + 2)
    y0, y1 = max(0, int(cy_px - reach)), min(height, int(cy_px + reach) + 2)
    if x0 >= x1 or y0 >= y1:
        return alpha
    dx, dy = g.x[y0:y1, x0:x1] - cx, g.y[y0:y1, x0:x1] - cy
    ca, sa = math.cos(angle), math.sin(angle)
    u = (dx * ca + dy * sa) / elong
    v = dy * ca - dx * sa
    d = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    rim = np.ones_like(d)
    for k, amp, phase in harmonics:
        rim += amp * np.cos(k * theta + phase)
    alpha[y0:y1, x0:x1] = np.clip((r * rim - d) / edge + 0.5, 0.0, 1.0)
    return alpha


def _capsule(g: _Grid, p: tuple[float, float], q: tuple[float, float], width: float) -> np.ndarray:
    """Alpha of a rounded segment from p to q (the strands joining nuclear lobes)."""
    px, py = p
    vx, vy = q[0] - px, q[1] - py
    t = np.clip(((g.x - px) * vx + (g.y - py) * vy) / max(vx * vx + vy * vy, 1e-6), 0, 1)
    d = np.hypot(g.x - px - t * vx, g.y - py - t * vy)
    return np.clip(width - d + 0.5, 0.0, 1.0)


def _paint(img: np.ndarray, alpha: np.ndarray, colour: Sequence[float] | np.ndarray) -> None:
    """In place: blend img towards colour (a constant or a per-pixel HxWx3 array) by alpha,
    touching only the rows and columns where alpha is non-zero."""
    rows, cols = np.flatnonzero(alpha.any(axis=1)), np.flatnonzero(alpha.any(axis=0))
    if rows.size == 0:
        return
    win = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    colour = np.asarray(colour, np.float32)
    if colour.ndim == 3:
        colour = colour[win]
    img[win] += alpha[win][..., None] * (colour - img[win])


def _texture_cells(shape: tuple[int, int], grain: int) -> tuple[int, int]:
    """Random cells of about ``grain`` px across a (height, width) canvas (>= 2 a side)."""
    return max(2, shape[0] // grain), max(2, shape[1] // grain)


def _speckle(rng: np.random.Generator, shape: tuple[int, int], density: float, grain: int
             ) -> np.ndarray:
    """Granule texture in 0..1: random cells of `grain` px switched on with `density`,
    bilinearly smoothed into round-ish dots."""
    on = (rng.random(_texture_cells(shape, grain)) < density).astype(np.float32)
    return np.asarray(Image.fromarray(on, mode="F").resize(shape[::-1],
                                                            Image.Resampling.BILINEAR))


def _chromatin(rng: np.random.Generator, shape: tuple[int, int], grain: int, strength: float
               ) -> np.ndarray:
    """Multiplicative nuclear texture around 1 (coarse grain = clumped, fine = open chromatin)."""
    noise = rng.standard_normal(_texture_cells(shape, grain)).astype(np.float32)
    smooth = np.asarray(
        Image.fromarray(noise, mode="F").resize(shape[::-1], Image.Resampling.BICUBIC)
    )
    return 1.0 + strength * smooth


def _jitter(rng: np.random.Generator, colour: Sequence[float], sigma: float = 0.03) -> np.ndarray:
    """A colour with small independent per-channel variation (cell-to-cell staining)."""
    return np.clip(np.asarray(colour, np.float32) + rng.normal(0, sigma, 3), 0, 1).astype(
        np.float32
    )


def _textured(colour: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """HxWx3 colour field: a base colour modulated by a multiplicative texture."""
    return np.clip(colour * texture[..., None], 0, 1)


# ---------------------------------------------------------------- nuclei


def _round_nucleus(
    g: _Grid, rng: np.random.Generator, c: _Cell, frac: float, offset: float
) -> np.ndarray:
    """Round-to-oval nucleus of radius frac * cell radius, shifted `offset` radii off centre."""
    a = rng.uniform(0, 2 * np.pi)
    return _blob(
        g,
        rng,
        c.cx + offset * c.r * math.cos(a),
        c.cy + offset * c.r * math.sin(a),
        frac * c.r,
        elong=rng.uniform(1.0, 1.2),
        angle=c.angle,
        wobble=0.06,
    )


def _kidney_nucleus(
    g: _Grid, rng: np.random.Generator, c: _Cell, frac: float, bite: float
) -> np.ndarray:
    """Kidney / horseshoe nucleus: an oval with a notch bitten out of one side."""
    ox, oy = math.cos(c.angle), math.sin(c.angle)
    nx, ny = c.cx - 0.15 * c.r * ox, c.cy - 0.15 * c.r * oy
    body = _blob(g, rng, nx, ny, frac * c.r, elong=1.25, angle=c.angle + np.pi / 2, wobble=0.1)
    reach = frac * c.r * rng.uniform(0.8, 1.05)
    notch = _blob(g, rng, nx + reach * ox, ny + reach * oy, bite * c.r, wobble=0.1)
    return body * (1.0 - notch)


def _lobed_nucleus(
    g: _Grid, rng: np.random.Generator, c: _Cell, n_lobes: int, lobe: float, strand: float
) -> np.ndarray:
    """n lobes on an arc joined by thin chromatin strands (2 for eosinophil/basophil,
    3-5 for a segmented neutrophil)."""
    span = rng.uniform(1.6, 2.6) if n_lobes > 2 else rng.uniform(0.9, 1.4)
    arc = 0.45 * c.r
    centre = (c.cx - 0.35 * arc * math.cos(c.angle), c.cy - 0.35 * arc * math.sin(c.angle))
    angles = c.angle + np.linspace(-span / 2, span / 2, n_lobes) + rng.normal(0, 0.15, n_lobes)
    points = [
        (
            centre[0] + arc * math.cos(a) * rng.uniform(0.85, 1.15),
            centre[1] + arc * math.sin(a) * rng.uniform(0.85, 1.15),
        )
        for a in angles
    ]
    alpha = np.zeros_like(g.x)
    for p in points:
        r = lobe * c.r * rng.uniform(0.85, 1.15)
        alpha = np.maximum(alpha, _blob(g, rng, *p, r, elong=1.2, angle=rng.uniform(0, 6.3)))
    for p, q in zip(points[:-1], points[1:], strict=True):
        alpha = np.maximum(alpha, _capsule(g, p, q, strand * c.r))
    return alpha


# ---------------------------------------------------------------- cell types


def _granulocyte(
    img: np.ndarray,
    g: _Grid,
    rng: np.random.Generator,
    c: _Cell,
    *,
    cytoplasm: Sequence[float],
    nucleus_alpha: np.ndarray,
    nucleus: Sequence[float],
    granules: Sequence[float],
    density: float,
    grain: int,
    over_nucleus: float,
    granule_strength: float = 0.9,
) -> None:
    """Shared painter: cytoplasm, nucleus with chromatin, then granules that also lie
    over the nucleus with weight `over_nucleus` (1 hides it, as in basophils)."""
    body = _blob(g, rng, c.cx, c.cy, c.r, elong=rng.uniform(1.0, 1.12), angle=c.angle)
    _paint(img, body, _jitter(rng, cytoplasm))
    tex = _chromatin(rng, g.shape, max(2, g.size // 24), 0.12)
    _paint(img, nucleus_alpha * body, _textured(_jitter(rng, nucleus), tex))
    spots = _speckle(rng, g.shape, density, grain) * body * granule_strength
    spots *= 1.0 - (1.0 - over_nucleus) * nucleus_alpha
    _paint(img, spots, _jitter(rng, granules))


def _basophil(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Bilobed nucleus hidden under coarse, dark purple-black granules."""
    nuc = _lobed_nucleus(g, rng, c, 2, 0.42, 0.12)
    _granulocyte(
        img,
        g,
        rng,
        c,
        cytoplasm=(0.80, 0.70, 0.84),
        nucleus_alpha=nuc,
        nucleus=(0.42, 0.24, 0.52),
        granules=(0.20, 0.09, 0.30),
        density=rng.uniform(0.2, 0.6),
        grain=max(2, g.size // 28),
        over_nucleus=0.9,
    )


def _eosinophil(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Bilobed ("spectacle") nucleus in a cytoplasm packed with orange-red granules."""
    nuc = _lobed_nucleus(g, rng, c, 2, 0.36, 0.08)
    _granulocyte(
        img,
        g,
        rng,
        c,
        cytoplasm=(0.93, 0.70, 0.58),
        nucleus_alpha=nuc,
        nucleus=(0.38, 0.20, 0.48),
        granules=_jitter(rng, (0.88, 0.45, 0.36), 0.07),
        density=rng.uniform(0.3, 0.7),
        grain=max(2, g.size // 36),
        over_nucleus=0.15,
    )


def _neutrophil(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """3-5 lobed nucleus joined by thin strands (or, in band forms, a thick curved band);
    pale pink-lilac cytoplasm with fine granules."""
    if rng.random() < BAND_NEUTROPHIL_P:
        nuc = _lobed_nucleus(g, rng, c, 3, 0.2, 0.17)
    else:
        nuc = _lobed_nucleus(g, rng, c, int(rng.integers(3, 6)), 0.24, 0.06)
    _granulocyte(
        img,
        g,
        rng,
        c,
        cytoplasm=(0.88, 0.79, 0.84),
        nucleus_alpha=nuc,
        nucleus=(0.36, 0.18, 0.48),
        granules=(0.78, 0.60, 0.75),
        density=0.35,
        grain=max(2, g.size // 48),
        over_nucleus=0.0,
        granule_strength=0.5,
    )


def _immature_granulocyte(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Large cell, round or indented nucleus with fine open chromatin, some granules."""
    nuc = (
        _round_nucleus(g, rng, c, rng.uniform(0.55, 0.68), 0.2)
        if rng.random() < 0.5
        else _kidney_nucleus(g, rng, c, rng.uniform(0.55, 0.65), 0.3)
    )
    _granulocyte(
        img,
        g,
        rng,
        c,
        cytoplasm=(0.80, 0.72, 0.85),
        nucleus_alpha=nuc,
        nucleus=(0.50, 0.32, 0.60),
        granules=(0.60, 0.36, 0.58),
        density=rng.uniform(0.05, 0.3),
        grain=max(2, g.size // 40),
        over_nucleus=0.2,
        granule_strength=0.7,
    )
    fine = _chromatin(rng, g.shape, 2, 0.18)  # fine chromatin on top of the base texture
    img *= np.where(nuc[..., None] > 0.5, fine[..., None], 1.0)


def _monocyte(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Large cell, folded kidney nucleus with lacy chromatin, grey-blue vacuolated cytoplasm."""
    body = _blob(g, rng, c.cx, c.cy, c.r, elong=rng.uniform(1.0, 1.2), angle=c.angle, wobble=0.1)
    _paint(img, body, _jitter(rng, (0.74, 0.74, 0.86)))
    for _ in range(int(rng.integers(0, 5))):  # vacuoles
        a, d = rng.uniform(0, 2 * np.pi), rng.uniform(0.4, 0.8) * c.r
        vac = _blob(
            g, rng, c.cx + d * math.cos(a), c.cy + d * math.sin(a), rng.uniform(0.05, 0.1) * c.r
        )
        _paint(img, vac * body, (0.88, 0.88, 0.94))
    nuc = _kidney_nucleus(g, rng, c, rng.uniform(0.5, 0.62), rng.uniform(0.3, 0.45))
    tex = _chromatin(rng, g.shape, max(2, g.size // 32), 0.2)
    _paint(img, nuc * body, _textured(_jitter(rng, (0.46, 0.32, 0.58)), tex))


def _lymphocyte(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Small cell; round dark nucleus fills most of it, leaving a thin sky-blue rim."""
    body = _blob(g, rng, c.cx, c.cy, c.r, elong=rng.uniform(1.0, 1.1), angle=c.angle)
    _paint(img, body, _jitter(rng, (0.66, 0.74, 0.92)))
    nuc = _round_nucleus(g, rng, c, rng.uniform(0.75, 0.9), rng.uniform(0.0, 0.12))
    tex = _chromatin(rng, g.shape, max(2, g.size // 20), 0.15)
    _paint(img, nuc * body, _textured(_jitter(rng, (0.28, 0.15, 0.42)), tex))


def _erythroblast(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """Small round cell; dense, very dark round nucleus; blue-grey to pinkish cytoplasm."""
    body = _blob(g, rng, c.cx, c.cy, c.r, wobble=0.03)
    tone = rng.uniform()  # polychromasia: basophilic (blue) to orthochromatic (pink)
    cyto = (1 - tone) * np.array([0.70, 0.68, 0.84]) + tone * np.array([0.86, 0.66, 0.70])
    _paint(img, body, _jitter(rng, cyto))
    nuc = _round_nucleus(g, rng, c, rng.uniform(0.5, 0.7), rng.uniform(0.0, 0.3))
    _paint(img, nuc * body, _jitter(rng, (0.20, 0.08, 0.28)))


def _platelet(img: np.ndarray, g: _Grid, rng: np.random.Generator, c: _Cell) -> None:
    """No nucleated cell: a few small purple fragments with granular centres."""
    for _ in range(int(rng.integers(2, 9))):
        a, d = rng.uniform(0, 2 * np.pi), abs(rng.normal(0, 0.13)) * g.size
        r = rng.uniform(0.03, 0.065) * g.size
        px, py = c.cx + d * math.cos(a), c.cy + d * math.sin(a)
        frag = _blob(
            g, rng, px, py, r, elong=rng.uniform(1, 1.6), angle=rng.uniform(0, 6.3), wobble=0.25
        )
        _paint(img, frag, _jitter(rng, (0.68, 0.55, 0.78)))
        core = _blob(g, rng, px, py, 0.55 * r, wobble=0.3)
        _paint(img, core * frag, _jitter(rng, (0.42, 0.26, 0.56)))


# label -> (painter, main-cell radius range as a fraction of the image side)
_PAINTERS: tuple[tuple[Callable[..., None], tuple[float, float]], ...] = (
    (_basophil, (0.21, 0.26)),
    (_eosinophil, (0.24, 0.29)),
    (_erythroblast, (0.15, 0.20)),
    (_immature_granulocyte, (0.27, 0.33)),
    (_lymphocyte, (0.16, 0.21)),
    (_monocyte, (0.28, 0.34)),
    (_neutrophil, (0.24, 0.28)),
    (_platelet, (0.0, 0.0)),  # fragments are sized in _platelet
)


# ---------------------------------------------------------------- smear and camera


def _smear(g: _Grid, rng: np.random.Generator, zoom: float, n_rbc: int) -> np.ndarray:
    """Background plasma tone plus red cells with central pallor, scattered over the field."""
    bg = _jitter(rng, BACKGROUND, 0.02)
    img = np.empty((*g.shape, 3), np.float32)
    img[:] = bg
    img *= _chromatin(rng, g.shape, max(2, g.size // 4), 0.02)[..., None]
    rbc = _jitter(rng, RBC_COLOUR, 0.04)
    for _ in range(n_rbc):
        r = rng.uniform(*RBC_RADIUS) * g.size * zoom
        x, y = rng.uniform(-0.1, 1.1, 2) * g.shape[::-1] - (g.ox, g.oy)
        cell = _blob(g, rng, x, y, r, elong=rng.uniform(1.0, 1.15), angle=rng.uniform(0, 6.3))
        _paint(img, cell, _jitter(rng, rbc, 0.015))
        pallor = _blob(g, rng, x, y, 0.3 * r, wobble=0.1, edge=0.4 * r)
        _paint(img, 0.6 * pallor * cell, bg)
    return img


def _stain(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Slide-to-slide variation: stain saturation, contrast, brightness and a small colour
    cast. No free colour matrix: real smears stay pink-purple, never green or yellow."""
    grey = img.mean(axis=2, keepdims=True)
    img = grey + (img - grey) * np.float32(np.exp(rng.normal(0, SATURATION_SIGMA)))
    img = (img - 0.5) * np.float32(np.exp(rng.normal(0, CONTRAST_SIGMA))) + 0.5
    cast = (1.0 + rng.normal(0, CAST_SIGMA, 3)).astype(np.float32)
    return img * cast + np.float32(rng.normal(0, BRIGHTNESS_SIGMA))


def render_cell(label: int, size: int, seed: int | Sequence[int]) -> np.ndarray:
    """One synthetic BloodMNIST image of class `label`: (size, size, 3) uint8."""
    return _render(label, size, (size, size), seed)


def render_capture(label: int, seed: int | Sequence[int], *,
                   crop_px: int = BLOODMNIST_CROP_PX,
                   capture_px: tuple[int, int] = PBC_CAPTURE_PX) -> np.ndarray:
    """A raw microscope capture of class `label` like the PBC photos BloodMNIST was cut from:
    (height, width, 3) uint8 of ``capture_px`` = (width, height), whose centred
    ``crop_px`` square (``shared.imaging.crop_field_of_view`` with the dataset's
    ``raw_capture``) is a BloodMNIST-like image at ``crop_px`` and around which the smear
    goes on (more red cells, same stain). For tests and benches of the field of view."""
    width, height = capture_px
    if not 16 <= crop_px <= min(width, height):
        raise ValueError(f"crop_px must be 16..{min(width, height)}, got {crop_px}")
    return _render(label, crop_px, (height, width), seed)


def _render(label: int, size: int, shape: tuple[int, int], seed: int | Sequence[int]
            ) -> np.ndarray:
    """A (height, width) = ``shape`` smear whose centred ``size`` square holds the cell."""
    if label not in range(len(CLASS_NAMES)):
        raise ValueError(f"label must be 0..{len(CLASS_NAMES) - 1}, got {label}")
    rng = np.random.default_rng(seed)
    height, width = shape
    origin = (SUPERSAMPLE * ((width - size) // 2), SUPERSAMPLE * ((height - size) // 2))
    g = _Grid.of(size * SUPERSAMPLE, (height * SUPERSAMPLE, width * SUPERSAMPLE), origin)
    zoom = float(np.exp(rng.normal(0, SIZE_JITTER)))
    painter, (rmin, rmax) = _PAINTERS[label]
    n_rbc = int(rng.integers(3, 10 if label == 7 else 8))
    n_rbc = round(n_rbc * height * width / size**2)  # the same density over a wider field
    img = _smear(g, rng, zoom, n_rbc)
    centre = g.size * (0.5 + rng.normal(0, POSITION_JITTER, 2))
    cell = _Cell(
        float(centre[0]),
        float(centre[1]),
        rng.uniform(rmin, rmax) * g.size * zoom,
        rng.uniform(0, 2 * np.pi),
    )
    painter(img, g, rng, cell)
    img = np.clip(_stain(rng, img), 0, 1)
    out = Image.fromarray((img * 255 + 0.5).astype(np.uint8))
    blur = rng.choice([0.0, rng.uniform(0.3, 1.2)]) * SUPERSAMPLE
    if blur > 0:
        out = out.filter(ImageFilter.GaussianBlur(float(blur)))
    out = out.resize((width, height), Image.Resampling.BOX)
    arr = np.asarray(out, np.float32) + rng.normal(0, rng.uniform(0.5, 3.0), (*shape, 3))
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- dataset writer


def assign_splits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Split index (0 train, 1 val, 2 test) per example: exact MedMNIST split totals,
    stratified by class (each split's members are spread evenly through every class)."""
    n = len(labels)
    totals = largest_remainder(n, REAL_SPLIT_COUNTS)
    keys = np.concatenate([(np.arange(t) + 0.5) / t for t in totals if t]) if n else []
    owner = np.concatenate([np.full(t, s) for s, t in enumerate(totals) if t]) if n else []
    pattern = np.asarray(owner, np.int64)[np.argsort(keys, kind="stable")]
    order = np.lexsort((rng.random(n), labels))  # by class, random within a class
    splits = np.empty(n, np.int64)
    splits[order] = pattern
    return splits


def generate_bloodmnist(out_path: str | Path, n: int, size: int = 64, seed: int = 0) -> Path:
    """Write a synthetic BloodMNIST .npz of n images at size px; return its path.

    Class counts follow the real class frequencies exactly (largest remainder) and the
    train/val/test totals MedMNIST's 11959/1712/3421 proportions; the file is written by
    `medmnist.write_medmnist_npz`, the one owner of the format.
    """
    if n < len(SPLITS):
        raise ValueError(f"n must be >= {len(SPLITS)} (one image per split), got {n}")
    if size < 16:
        raise ValueError(f"size must be >= 16 px, got {size}")
    rng = np.random.default_rng([seed, 0xB100D])
    labels = np.repeat(np.arange(len(CLASS_NAMES)), largest_remainder(n, REAL_CLASS_COUNTS))
    rng.shuffle(labels)
    splits = assign_splits(labels, rng)
    images = np.stack([render_cell(int(y), size, (seed, i)) for i, y in enumerate(labels)])
    arrays = {
        name: (images[splits == s], labels[splits == s].astype(np.uint8))
        for s, name in enumerate(SPLITS)
    }
    return write_medmnist_npz(out_path, arrays, n_classes=len(CLASS_NAMES))
