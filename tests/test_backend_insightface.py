"""The insightface backend on ONNX graphs with the packs' signatures (no real weights offline)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from faceid_cli.errors import MissingModelError
from faceid_cli.faces import AnalyzerOptions, align_face, load_analyzer, resolve_backend
from faceid_cli.faces.backend_insightface import InsightFaceAnalyzer, find_pack

from .onnx_models import PLANTED, build_detector, build_pack, build_recognizer, reference_embedding

# An 800x600 photo is letterboxed into 640x480 of the 640x640 input: scale 0.8.
PHOTO_SIZE = (800, 600)
SCALE = 0.8


def _photo():
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (PHOTO_SIZE[1], PHOTO_SIZE[0], 3), dtype=np.uint8))


@pytest.fixture
def pack_root(tmp_path):
    build_pack(tmp_path, "buffalo_l")
    return tmp_path


@pytest.mark.parametrize(
    "variant",
    [{}, {"dynamic_input": True, "batched": True}],
    ids=["static", "dynamic-batched"],
)
def test_detection_decodes_planted_faces(tmp_path, variant):
    build_pack(tmp_path, "buffalo_l", **variant)
    analyzer = InsightFaceAnalyzer(root=tmp_path)
    faces = analyzer.detect(_photo())
    big, duplicate, small, weak = PLANTED
    assert len(faces) == 2, "the duplicate is suppressed and the weak one dropped"
    assert faces[0].score == pytest.approx(big.score)
    assert np.allclose(faces[0].bbox, big.box_in_input() / SCALE, atol=1e-3)
    assert np.allclose(faces[0].landmarks, big.keypoints_in_input() / SCALE, atol=1e-3)
    assert faces[1].score == pytest.approx(small.score)
    assert np.allclose(faces[1].bbox, small.box_in_input() / SCALE, atol=1e-3)


def test_embedding_is_the_recogniser_on_the_aligned_crop(pack_root):
    analyzer = InsightFaceAnalyzer(root=pack_root)
    photo = _photo()
    face = analyzer.detect(photo)[0]
    embedding = analyzer.embed(photo, face)
    assert embedding.shape == (512,) and analyzer.embedding_dim == 512
    crop = np.asarray(align_face(photo, face.landmarks, 112))
    assert np.allclose(embedding, reference_embedding(crop), atol=1e-4)


def test_faces_and_embeddings_equal_insightface_face_analysis(pack_root):
    import warnings

    from insightface.app import FaceAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reference = FaceAnalysis(name=str(pack_root / "buffalo_l"), allowed_modules=["detection", "recognition"],
                                 providers=["CPUExecutionProvider"])
        reference.prepare(ctx_id=-1, det_size=(640, 640))
        photo = _photo()
        theirs = reference.get(np.asarray(photo)[:, :, ::-1].copy())
    analyzer = InsightFaceAnalyzer(root=pack_root, pack="buffalo_l")
    ours = analyzer.detect(photo)
    assert len(ours) == len(theirs) == 2
    theirs = sorted(theirs, key=lambda f: -(f.bbox[2] - f.bbox[0]) * (f.bbox[3] - f.bbox[1]))  # largest first
    for mine, their in zip(ours, theirs):
        assert np.array_equal(np.asarray(mine.bbox, dtype=np.float32), their.bbox)
        assert np.array_equal(mine.landmarks.astype(np.float32), their.kps)
        assert mine.score == pytest.approx(float(their.det_score), abs=0)
        assert np.array_equal(analyzer.embed(photo, mine), their.normed_embedding.astype(np.float32))


def test_packs_are_found_by_name_and_in_nested_zip_folders(tmp_path):
    assert find_pack(tmp_path) is None
    build_detector(tmp_path / "antelopev2" / "antelopev2" / "scrfd_10g_bnkps.onnx")
    build_recognizer(tmp_path / "antelopev2" / "antelopev2" / "glintr100.onnx")
    found = find_pack(tmp_path)
    assert found.name == "antelopev2" and found.folder == tmp_path / "antelopev2" / "antelopev2"
    build_pack(tmp_path, "buffalo_l")
    assert find_pack(tmp_path).name == "antelopev2", "antelopev2 is preferred"
    assert find_pack(tmp_path, "buffalo_l").name == "buffalo_l"


def test_missing_pack_says_which_files_go_where(tmp_path):
    with pytest.raises(MissingModelError) as caught:
        InsightFaceAnalyzer(root=tmp_path)
    message = str(caught.value)
    for fragment in ("scrfd_10g_bnkps.onnx", "glintr100.onnx", "det_10g.onnx", "w600k_r50.onnx",
                     str(tmp_path / "antelopev2"), "FACEID_INSIGHTFACE_ROOT", "never downloads"):
        assert fragment in message
    assert caught.value.exit_code == 1


def test_half_a_pack_is_not_a_pack(tmp_path):
    build_detector(tmp_path / "buffalo_l" / "det_10g.onnx")
    assert find_pack(tmp_path) is None


def test_mxnet_recognisers_that_normalise_inside_the_graph_get_raw_pixels(tmp_path):
    # insightface recognises such exports by their first nodes (Sub and Mul) and feeds them 0-255
    build_pack(tmp_path, "buffalo_l")
    build_recognizer(tmp_path / "buffalo_l" / "w600k_r50.onnx", normalise_inside=True)
    analyzer = InsightFaceAnalyzer(root=tmp_path)
    photo = _photo()
    face = analyzer.detect(photo)[0]
    crop = np.asarray(align_face(photo, face.landmarks, 112))
    assert np.allclose(analyzer.embed(photo, face), reference_embedding(crop), atol=1e-4)


def test_a_detector_without_keypoints_is_refused(tmp_path):
    # a recogniser where the detector should be has no SCRFD heads
    build_recognizer(tmp_path / "buffalo_l" / "det_10g.onnx")
    build_recognizer(tmp_path / "buffalo_l" / "w600k_r50.onnx")
    with pytest.raises(MissingModelError, match="not an SCRFD detector"):
        InsightFaceAnalyzer(root=tmp_path)


def test_damaged_onnx_file(tmp_path):
    build_pack(tmp_path, "buffalo_l")
    (tmp_path / "buffalo_l" / "w600k_r50.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(MissingModelError, match="damaged"):
        InsightFaceAnalyzer(root=tmp_path)


def test_auto_prefers_insightface_only_when_a_pack_is_present(tmp_path, monkeypatch):
    options = AnalyzerOptions(insightface_root=tmp_path)
    assert resolve_backend("auto", options) == "dlib"
    build_pack(tmp_path, "buffalo_l")
    assert resolve_backend("auto", options) == "insightface"
    assert load_analyzer("auto", options).name == "insightface"
    monkeypatch.setenv("FACEID_INSIGHTFACE_ROOT", str(tmp_path))
    assert resolve_backend("auto") == "insightface"
    assert resolve_backend("dlib", options) == "dlib"
