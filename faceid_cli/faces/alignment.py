"""5-point face alignment to the ArcFace template (112x112 and any larger square crop).

The template is the standard one used by ArcFace-family recognisers: the five points of
:data:`~faceid_cli.faces.face.LANDMARK_NAMES` in a 112x112 crop. Larger crops (224, 448, ...)
scale the same template, so every crop shows the same part of the face at a higher resolution;
``zoom`` < 1 widens the view for models trained on looser crops.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)


def arcface_template(size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """The five template points for a ``size`` x ``size`` crop (``zoom`` < 1 shows more around)."""
    if size <= 0 or zoom <= 0:
        raise ValueError(f"crop size and zoom must be positive, got size={size}, zoom={zoom}")
    centre = 56.0
    return ((ARCFACE_TEMPLATE_112 - centre) * zoom + centre) * (size / 112.0)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, shift; no reflection).

    Umeyama's closed form. Returns the 2x3 matrix ``M`` with ``dst ≈ M @ [x, y, 1]``.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"need two matching (N>=2, 2) point sets, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var < 1e-12:
        raise ValueError("landmarks are degenerate (all points coincide)")
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    signs = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        signs[-1] = -1.0
    rotation = u @ np.diag(signs) @ vt
    scale = float((s * signs).sum() / src_var)
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def alignment_matrix(landmarks: np.ndarray, size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """The 2x3 matrix taking image pixel coordinates to crop pixel coordinates."""
    return estimate_similarity(np.asarray(landmarks, dtype=np.float64), arcface_template(size, zoom))


def align_face(
    image: Image.Image, landmarks: np.ndarray, size: int = 112, zoom: float = 1.0
) -> Image.Image:
    """Warp ``image`` so the face's five landmarks land on the ArcFace template of ``size`` px.

    Coordinates follow the detectors' convention (pixel *centres* at integers). Pillow samples
    with pixel centres at +0.5, so both point sets are shifted by half a pixel before solving.
    A large face shrunk into a small crop is box-filtered first (Pillow's affine warp does not
    antialias), which keeps fine texture from aliasing into the recogniser's input.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"need five finite (x, y) landmarks, got shape {points.shape}")
    matrix = alignment_matrix(points, size, zoom)
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    factor = int(1.0 / scale) if scale < 0.5 else 1
    if factor > 1:
        image = image.reduce(factor)
        points = (points + 0.5) / factor - 0.5
    matrix = estimate_similarity(points + 0.5, arcface_template(size, zoom) + 0.5)
    inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    return image.transform(
        (size, size),
        Image.Transform.AFFINE,
        data=tuple(inverse.ravel()),
        resample=Image.Resampling.BICUBIC,
        fillcolor=(0, 0, 0) if image.mode == "RGB" else 0,
    )
