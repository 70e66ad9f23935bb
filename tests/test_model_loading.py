"""The real loading paths (local diffusers folder, Hugging Face cache by repo id, trained encoder
checkpoint), exercised offline on a tiny pipeline saved to disk the way real ones are laid out."""

from __future__ import annotations

import pytest

from faceid_cli.errors import InvalidArgumentError
from faceid_cli.models.registry import find_in_cache, resolve_model

from .helpers import as_hub_cache, assert_one_line_error, parse_json, run_cli


@pytest.fixture(scope="module")
def saved_sdxl(tmp_path_factory):
    from faceid_cli.models.tiny import build_tiny_sdxl

    folder = tmp_path_factory.mktemp("models") / "tiny-sdxl"
    build_tiny_sdxl().save_pretrained(folder, safe_serialization=True)
    return folder


@pytest.fixture(scope="module")
def sdxl_encoder(tmp_path_factory):
    from faceid_cli.encoders.m2 import build_random_m2_encoder

    return build_random_m2_encoder((32, 32), seed=7).save_pretrained(tmp_path_factory.mktemp("enc") / "m2-xl")


def test_local_folder_with_a_trained_encoder(faces_dir, tmp_path, saved_sdxl, sdxl_encoder):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", saved_sdxl,
                     "--encoder", sdxl_encoder, "--steps", "2", "--seed", "1", "-o", tmp_path, "--json")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert document["family"] == "tiny-xl" and document["encoder"] == str(sdxl_encoder)


def test_repo_id_from_the_hugging_face_cache(faces_dir, tmp_path, saved_sdxl, sdxl_encoder, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    snapshot = as_hub_cache(tmp_path / "hf", "someone/tiny-sdxl", saved_sdxl)
    assert find_in_cache("someone/tiny-sdxl") == snapshot
    assert resolve_model("someone/tiny-sdxl").kind == "repo"
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", "someone/tiny-sdxl",
                     "--encoder", sdxl_encoder, "--steps", "2", "--seed", "1", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    assert parse_json(result)["model"] == "someone/tiny-sdxl"


def test_encoder_for_another_family_is_refused(faces_dir, tmp_path, saved_sdxl):
    from faceid_cli.encoders.m2 import build_random_m2_encoder

    sd_encoder = build_random_m2_encoder((32,)).save_pretrained(tmp_path / "m2-sd")
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", saved_sdxl,
                     "--encoder", sd_encoder, "-o", tmp_path)
    assert_one_line_error(result, 2, "tiny", "trained for this base model")


def test_method_must_match_the_encoder(faces_dir, tmp_path, saved_sdxl, sdxl_encoder):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", saved_sdxl,
                     "--encoder", sdxl_encoder, "--method", "clip-image", "-o", tmp_path)
    assert_one_line_error(result, 2, "--method m2")


def test_pickle_model_files_are_refused(tmp_path, faces_dir):
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"pickle")
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", checkpoint, "-o", tmp_path)
    assert_one_line_error(result, 2, "pickle", ".safetensors")


def test_model_identifiers():
    assert resolve_model("tiny").is_tiny and resolve_model("sdxl").location.endswith("stable-diffusion-xl-base-1.0")
    assert resolve_model("org/name").kind == "repo"
    with pytest.raises(InvalidArgumentError):
        resolve_model("no such model")


def test_models_command_reports_the_cache(tmp_path, saved_sdxl, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    as_hub_cache(tmp_path / "hf", "stabilityai/stable-diffusion-xl-base-1.0", saved_sdxl)
    result = run_cli("models", "--json")
    assert result.exit_code == 0
    found = {row["name"]: row["found"] for row in parse_json(result)["models"]}
    assert found["sdxl"] is True and found["sd21-base"] is False and found["tiny"] is True
    assert found["dlib"] is True and found["insightface/antelopev2"] is False
