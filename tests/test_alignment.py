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
    template = arcface_template(size)
    error = np.abs(_dot_centres(crop, template) - template).max()
    assert error < 0.02 * size + 0.6  # well under a pixel of the 112 template


def test_large_face_is_prefiltered_without_shifting(monkeypatch):
    truth = _similarity(5.0, 12.0, (300.0, 200.0))  # a face ~12x the crop: box-filtered first
    landmarks = ARCFACE_TEMPLATE_112 @ truth[:, :2].T + truth[:, 2]
    image = _dots_image(landmarks, size=(2200, 1800), radius=30)
    reduced = []
    original_reduce = Image.Image.reduce
    monkeypatch.setattr(Image.Image, "reduce", lambda self, f, *a: reduced.append(f) or original_reduce(self, f, *a))
    crop = align_face(image, landmarks, size=112)
    assert reduced and reduced[0] >= 2
    error = np.abs(_dot_centres(crop, ARCFACE_TEMPLATE_112) - ARCFACE_TEMPLATE_112).max()
    assert error < 1.0


def test_bad_landmarks_are_refused():
    with pytest.raises(ValueError):
        align_face(Image.new("RGB", (10, 10)), np.zeros((4, 2)))
