"""Five-point similarity alignment to the ArcFace template."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from faceid_cli.faces.alignment import (
    ARCFACE_TEMPLATE_112,
    align_face,
    arcface_template,
    estimate_similarity,
    norm_crop_template,
)


def _similarity(angle_deg, scale, shift):
    a = np.deg2rad(angle_deg)
    rot = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.hstack([rot, np.asarray(shift, float)[:, None]])


def test_estimate_recovers_an_exact_similarity():
    truth = _similarity(23.0, 1.7, (12.0, -40.0))
    src = np.random.default_rng(0).uniform(0, 300, size=(5, 2))
    dst = src @ truth[:, :2].T + truth[:, 2]
    assert np.allclose(estimate_similarity(src, dst), truth, atol=1e-9)


def test_estimate_never_reflects():
    src = ARCFACE_TEMPLATE_112.copy()
    mirrored = src * np.array([-1.0, 1.0])
    matrix = estimate_similarity(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0


def test_degenerate_landmarks_are_refused():
    with pytest.raises(ValueError):
        estimate_similarity(np.ones((5, 2)), ARCFACE_TEMPLATE_112)


def test_templates_scale_with_crop_size():
    assert np.allclose(arcface_template(112), ARCFACE_TEMPLATE_112)
    assert np.allclose(arcface_template(224), ARCFACE_TEMPLATE_112 * 2)
    assert np.allclose(arcface_template(448), ARCFACE_TEMPLATE_112 * 4)
    wide = arcface_template(112, zoom=0.5)
    assert np.ptp(wide[:, 0]) == pytest.approx(np.ptp(ARCFACE_TEMPLATE_112[:, 0]) / 2)


def _dots_image(points, size=(640, 480), radius=4):
    image = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(image)
    for x, y in points:
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=(255, 255, 255))
    return image


def _dot_centres(crop: Image.Image, expected: np.ndarray) -> np.ndarray:
    """Centroid of bright pixels near each expected dot position."""
    pixels = np.asarray(crop, dtype=np.float64).mean(axis=2)
    ys, xs = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
    found = []
    for ex, ey in expected:
        window = (np.abs(xs - ex) < 10) & (np.abs(ys - ey) < 10)
        weights = pixels * window
        found.append([(weights * xs).sum() / weights.sum(), (weights * ys).sum() / weights.sum()])
    return np.array(found)


@pytest.mark.parametrize("size", [112, 224, 448])
@pytest.mark.parametrize("angle,scale", [(0.0, 2.0), (17.0, 3.0), (-30.0, 1.2)])
def test_aligned_landmarks_land_on_the_template(size, angle, scale):
    # Place a "face" whose landmarks are the template rotated, scaled and shifted.
    truth = _similarity(angle, scale, (250.0, 120.0))
    landmarks = ARCFACE_TEMPLATE_112 @ truth[:, :2].T + truth[:, 2]
    crop = align_face(_dots_image(landmarks, radius=int(2 * scale)), landmarks, size=size)
    assert crop.size == (size, size)
    template = norm_crop_template(size)
    error = np.abs(_dot_centres(crop, template) - template).max()
    assert error < 0.02 * size + 0.6  # well under a pixel of the 112 template


@pytest.mark.parametrize("size", [112, 224, 448, 128, 256])
def test_crops_are_pixel_identical_to_insightface_norm_crop(faces_dir, size):
    import warnings

    from faceid_cli.images import load_image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # insightface's own call of a deprecated scikit-image API
        from insightface.utils.face_align import norm_crop
    rng = np.random.default_rng(size)
    for name in ("obama.jpg", "biden.jpg", "kit_harington1.jpeg"):
        image = load_image(faces_dir / name)
        pixels = np.asarray(image)
        for _ in range(8):  # faces of many sizes and tilts, some running off the photo
            truth = _similarity(rng.uniform(-40, 40), rng.uniform(0.4, 4.0), rng.uniform(0, 300, 2))
            landmarks = (ARCFACE_TEMPLATE_112 @ truth[:, :2].T + truth[:, 2]
                         + rng.normal(0, 1.5, (5, 2))).astype(np.float32)
            ours = np.asarray(align_face(image, landmarks, size))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                theirs = norm_crop(pixels, landmarks, size)
            assert np.array_equal(ours, theirs), (name, size)


def test_sizes_off_112_follow_the_128_convention():
    # insightface: a 128-multiple crop scales the template by size/128 and moves it 8*size/128 right
    template = norm_crop_template(256)
    assert np.allclose(template, ARCFACE_TEMPLATE_112 * 2 + [16, 0], atol=1e-4)
    assert np.allclose(norm_crop_template(96), ARCFACE_TEMPLATE_112 * 0.75 + [6, 0], atol=1e-4)
    assert np.allclose(norm_crop_template(224), ARCFACE_TEMPLATE_112 * 2, atol=1e-4)


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError):
        align_face(Image.new("RGB", (10, 10)), np.zeros((4, 2)))
