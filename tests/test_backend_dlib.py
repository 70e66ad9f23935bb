"""The dlib backend on real photos: counts, landmarks, and identity verdicts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from PIL import Image

from faceid_cli.faces import cosine_similarity, select_face
from faceid_cli.images import load_image

SINGLE_FACE = {
    "obama.jpg": "obama", "obama2.jpg": "obama", "obama3.jpg": "obama", "obama-240p.jpg": "obama",
    "obama_small.jpg": "obama", "obama_partial_face.jpg": "obama", "obama_partial_face2.jpg": "obama",
    "32bit.png": "obama", "biden.jpg": "biden", "biden2.jpg": "biden",
    "alex-lacamoire.png": "lacamoire", "alex_lacamoire1.jpg": "lacamoire",
    "alex_lacamoire2.jpg": "lacamoire", "rose_leslie1.jpg": "leslie", "rose_leslie2.jpg": "leslie",
    "kit_harington1.jpeg": "harington", "kit_harington2.jpeg": "harington",
}


@pytest.fixture(scope="module")
def identities(dlib_analyzer, faces_dir):
    return {
        name: dlib_analyzer.identity(load_image(faces_dir / name), 0, name).embedding
        for name in SINGLE_FACE
    }


@pytest.mark.parametrize("name", sorted(SINGLE_FACE))
def test_single_face_photos_have_one_face(dlib_analyzer, faces_dir, name):
    faces = dlib_analyzer.detect(load_image(faces_dir / name))
    assert len(faces) == 1
    face = faces[0]
    x1, y1, x2, y2 = face.bbox
    assert face.landmarks.shape == (5, 2)
    # eyes above the nose above the mouth; left features left of right ones
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])
    assert x1 - 0.2 * face.width < nose[0] < x2 + 0.2 * face.width


@pytest.mark.parametrize("name,count", [("two_people.jpg", 2), ("kit_with_rose.jpg", 2),
                                        ("obama_and_biden.jpg", 3)])
def test_group_photos(dlib_analyzer, faces_dir, name, count):
    faces = dlib_analyzer.detect(load_image(faces_dir / name))
    assert len(faces) == count
    areas = [face.area for face in faces]
    assert areas == sorted(areas, reverse=True), "faces are numbered largest first"


def test_embeddings_are_unit_128d(identities):
    for embedding in identities.values():
        assert embedding.shape == (128,)
        assert np.linalg.norm(embedding) == pytest.approx(1.0, abs=1e-5)


def test_same_people_score_above_and_others_below_the_threshold(dlib_analyzer, identities):
    threshold = dlib_analyzer.same_person_threshold
    for a, b in itertools.combinations(sorted(identities), 2):
        similarity = cosine_similarity(identities[a], identities[b])
        if SINGLE_FACE[a] == SINGLE_FACE[b]:
            assert similarity >= threshold, (a, b, similarity)
        else:
            assert similarity < threshold, (a, b, similarity)


def test_faces_in_a_group_photo_are_told_apart(dlib_analyzer, faces_dir, identities):
    image = load_image(faces_dir / "two_people.jpg")
    faces = dlib_analyzer.analyze(image)
    who = []
    for face in faces:
        scores = {person: max(cosine_similarity(face.embedding, identities[n])
                              for n, p in SINGLE_FACE.items() if p == person)
                  for person in ("obama", "biden")}
        who.append(max(scores, key=scores.get))
    assert sorted(who) == ["biden", "obama"]


def test_large_photo_is_detected_on_a_downscaled_copy(dlib_analyzer, faces_dir, monkeypatch):
    small = load_image(faces_dir / "obama.jpg")
    factor = 4000 / small.width
    large = small.resize((4000, round(small.height * factor)), Image.Resampling.BICUBIC)
    seen_sizes = []
    detector = dlib_analyzer._detector

    class Spy:
        def run(self, pixels, upsample, threshold):
            seen_sizes.append(pixels.shape[:2])
            return detector.run(pixels, upsample, threshold)

    monkeypatch.setattr(type(dlib_analyzer), "_detector", property(lambda self: Spy()))
    [face_large] = dlib_analyzer.detect(large)
    [face_small] = dlib_analyzer.detect(small)
    assert max(seen_sizes[0]) == dlib_analyzer.detection_size
    # the box maps back to full-resolution coordinates
    assert np.allclose(np.array(face_large.bbox) / factor, face_small.bbox, atol=0.08 * face_small.width)
    assert np.allclose(face_large.landmarks / factor, face_small.landmarks, atol=0.05 * face_small.width)


def test_no_face_in_a_blank_image(dlib_analyzer):
    assert dlib_analyzer.detect(Image.new("RGB", (300, 300), (120, 120, 120))) == []
