"""5-point face alignment to the ArcFace template (112x112 and any larger square crop).

The template is the standard one used by ArcFace-family recognisers: the five points of
:data:`~faceid_cli.faces.face.LANDMARK_NAMES` in a 112x112 crop. :func:`align_face` makes exactly
insightface's ``norm_crop``; larger crops (224, 448, ...) scale the same template, so every crop
shows the same part of the face at a higher resolution; ``zoom`` < 1 widens the view for models
trained on looser crops. :func:`arcface_template` and :func:`estimate_similarity` are the float64
forms the world's batched torch alignment uses.
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


def norm_crop_template(size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """The five template points of insightface's ``norm_crop`` for a ``size`` crop (float32, as
    insightface computes them): the 112 template scaled by size/112 for multiples of 112; for any
    other size, the 128 convention (scaled by size/128 and moved 8·size/128 to the right, so the
    face stays centred in the wider crop). ``zoom`` < 1 shrinks the points about the crop centre,
    showing more around the face (insightface has no zoom; at 1 the points are its own)."""
    if size <= 0 or zoom <= 0:
        raise ValueError(f"crop size and zoom must be positive, got size={size}, zoom={zoom}")
    if size % 112 == 0:
        ratio, shift = float(size) / 112.0, 0.0
    else:
        ratio = float(size) / 128.0
        shift = 8.0 * ratio
    points = ARCFACE_TEMPLATE_112.astype(np.float32) * ratio
    points[:, 0] += shift
    if zoom != 1.0:
        points = ((points - size / 2.0) * zoom + size / 2.0).astype(np.float32)
    return points


def norm_crop_matrix(landmarks: np.ndarray, size: int = 112, zoom: float = 1.0) -> np.ndarray:
    """insightface's ``estimate_norm``: the 2x3 similarity (scikit-image's least-squares estimate,
    as insightface uses) from image pixels to crop pixels."""
    from skimage.transform import SimilarityTransform

    transform = SimilarityTransform.from_estimate(np.asarray(landmarks), norm_crop_template(size, zoom))
    if not transform:
        raise ValueError("landmarks are degenerate (no similarity transform fits them)")
    return transform.params[0:2, :]


def align_face(
    image: Image.Image, landmarks: np.ndarray, size: int = 112, zoom: float = 1.0
) -> Image.Image:
    """Warp ``image`` so the face's five landmarks land on the ArcFace template of ``size`` px.

    Pixel for pixel what ``insightface.utils.face_align.norm_crop`` makes from the same landmarks
    (tests/test_alignment.py compares them): every ArcFace embedding in the field (InstantID,
    PhotoMaker, PuLID, Arc2Face) is computed on that crop, and thresholds assume it. The same
    similarity estimate, then OpenCV's bilinear warp with black outside; sizes that are not
    multiples of 112 follow insightface's 128 convention (:func:`norm_crop_template`).
    Coordinates follow the detectors' convention (pixel centres at integers), as OpenCV's.
    """
    import cv2

    points = np.asarray(landmarks)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        raise ValueError(f"need five finite (x, y) landmarks, got shape {points.shape}")
    matrix = norm_crop_matrix(points.astype(np.float32), size, zoom)
    pixels = np.asarray(image.convert("RGB") if image.mode not in ("RGB", "L") else image)
    warped = cv2.warpAffine(pixels, matrix, (size, size), borderValue=0.0)
    return Image.fromarray(warped)
