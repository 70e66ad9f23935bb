"""Face ViT backbone, M² encoder and CLIP-image baseline: shapes, checkpoints, real key layouts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from faceid_cli.encoders import FaceViT, FaceViTConfig, build_encoder, load_encoder
from faceid_cli.encoders.base import read_pickle_state_dict, read_state_dict
from faceid_cli.encoders.clip_image import build_random_clip_image_encoder
from faceid_cli.encoders.face_vit import extract_backbone_state_dict
from faceid_cli.encoders.m2 import M2IDEncoder, build_random_m2_encoder, default_feature_layers
from faceid_cli.errors import MissingModelError

KEYS = Path(__file__).parent / "data" / "faceclip_face_encoder_keys.json"
SMALL_VIT = {"image_size": 112, "patch_size": 16, "width": 32, "depth": 4, "num_heads": 2, "embedding_dim": 64}


def test_faceclip_face_encoder_state_dict_loads_without_missing_or_unexpected_keys():
    shapes = json.loads(KEYS.read_text())["shapes"]
    # FaceCLIP's checkpoint layout, with random (uninitialised) values of the real shapes
    state = {key: torch.empty(shape) for key, shape in shapes.items()}
    for key in state:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(0)
    with torch.device("meta"):
        model = FaceViT(FaceViTConfig())  # the defaults are FaceCLIP's ViT-L: 112 px, patch 9, 24 x 768
    result = model.load_state_dict(extract_backbone_state_dict(state), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert model.pos_embed.shape == (1, 144, 768)
    assert sum(p.numel() for p in model.parameters()) == 255_684_352  # as the release reports


def test_m2_encoder_loads_a_backbone_from_a_pickle_with_faceclip_prefix(tmp_path):
    source = FaceViT(FaceViTConfig(**SMALL_VIT))
    checkpoint = {"model." + "face_clip_l.face_encoder." + k: v for k, v in source.state_dict().items()}
    checkpoint["model.face_clip_l.text_projection"] = torch.zeros(3, 3)  # other parts are ignored
    path = tmp_path / "face_clip_encoder.pt"
    torch.save(checkpoint, path)
    encoder = M2IDEncoder(backbone=SMALL_VIT, word_dims=(32,), hidden_dim=16)
    encoder.load_backbone(read_pickle_state_dict(path))
    for key, value in source.state_dict().items():
        assert torch.equal(encoder.backbone.state_dict()[key], value)


def test_pickles_holding_code_are_refused(tmp_path):
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (print, ("this would run",))

    torch.save({"weights": Payload()}, path)
    with pytest.raises(Exception, match="(?i)weights_only|unsupported|global"):
        read_state_dict(path)


def test_feature_layers_are_the_quarters_of_the_depth():
    assert default_feature_layers(12) == (3, 6, 9, 12)
    assert default_feature_layers(24) == (6, 12, 18, 24)


def test_m2_multi_scale_features_and_words():
    encoder = build_random_m2_encoder((768, 1280))
    pixels = torch.rand(3, 3, 112, 112)
    features = encoder.features(pixels)
    assert features.shape == (3, 4 * 32 + 64)  # four pooled layers + the identity embedding
    words = encoder(pixels)
    assert words.shape == (3, 2, 768 + 1280)
    first, second = encoder.split_words(words)
    assert first.shape == (3, 2, 768) and second.shape == (3, 2, 1280)


def test_checkpoint_round_trip(tmp_path):
    encoder = build_random_m2_encoder((32,), seed=3)
    folder = encoder.save_pretrained(tmp_path / "enc")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((folder / "config.json").read_text())["encoder_type"] == "m2"
    loaded = load_encoder(folder)
    pixels = torch.rand(2, 3, 112, 112)
    with torch.inference_mode():
        assert torch.equal(loaded(pixels), encoder(pixels))
    assert loaded.content_hash == encoder.content_hash
    # the safetensors file alone carries its config too
    alone = tmp_path / "alone.safetensors"
    alone.write_bytes((folder / "model.safetensors").read_bytes())
    assert load_encoder(alone).content_hash == encoder.content_hash
    # a rebuilt encoder from the config alone has the same shapes
    rebuilt = build_encoder(encoder.config)
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in encoder.state_dict().items()}


def test_a_frozen_backbone_is_saved_once_and_shared(tmp_path):
    from safetensors.torch import load_file, save_file

    encoder = build_random_m2_encoder((32,), seed=3)
    vit = tmp_path / "face-vit"
    vit.mkdir()
    save_file({k: v.contiguous() for k, v in encoder.backbone.state_dict().items()}, str(vit / "model.safetensors"))
    folder = encoder.save_pretrained(tmp_path / "enc", shared={"backbone.": "../face-vit"})
    written = load_file(str(folder / "model.safetensors"))
    assert written and not any(key.startswith("backbone.") for key in written)  # only the heads
    assert json.loads((folder / "shared_weights.json").read_text()) == {"backbone.": "../face-vit"}
    loaded = load_encoder(folder)
    assert loaded.content_hash == encoder.content_hash  # exactly what was saved
    pixels = torch.rand(2, 3, 112, 112)
    with torch.inference_mode():
        assert torch.equal(loaded(pixels), encoder(pixels))
    # saving whole again drops the pointer
    encoder.save_pretrained(folder)
    assert not (folder / "shared_weights.json").exists()
    assert load_encoder(folder).content_hash == encoder.content_hash


def test_a_backbone_that_differs_is_never_shared_and_a_missing_one_is_named(tmp_path):
    from safetensors.torch import save_file

    encoder = build_random_m2_encoder((32,), seed=3)
    other = build_random_m2_encoder((32,), seed=4)
    vit = tmp_path / "face-vit"
    vit.mkdir()
    save_file({k: v.contiguous() for k, v in other.backbone.state_dict().items()}, str(vit / "model.safetensors"))
    with pytest.raises(ValueError, match="differs"):
        encoder.save_pretrained(tmp_path / "enc", shared={"backbone.": "../face-vit"})
    save_file({k: v.contiguous() for k, v in encoder.backbone.state_dict().items()}, str(vit / "model.safetensors"))
    folder = encoder.save_pretrained(tmp_path / "enc", shared={"backbone.": "../face-vit"})
    (vit / "model.safetensors").unlink()
    with pytest.raises(MissingModelError, match="backbone.*missing"):
        load_encoder(folder)


def test_different_weights_different_hash():
    assert build_random_m2_encoder((32,), seed=1).content_hash != build_random_m2_encoder((32,), seed=2).content_hash


def test_damaged_and_missing_checkpoints(tmp_path):
    with pytest.raises(MissingModelError, match="not found"):
        load_encoder(tmp_path / "nothing")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(MissingModelError, match="cannot read"):
        load_encoder(bad)


def test_clip_image_baseline_round_trip(tmp_path):
    encoder = build_random_clip_image_encoder((32, 32))
    pixels = torch.rand(2, 3, 32, 32)
    words = encoder(pixels)
    assert words.shape == (2, 1, 64)
    loaded = load_encoder(encoder.save_pretrained(tmp_path / "clip"))
    with torch.inference_mode():
        assert torch.allclose(loaded(pixels), encoder(pixels))
