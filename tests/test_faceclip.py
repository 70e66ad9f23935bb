"""FaceCLIP: the encoder's structure against the release's key manifest, its deformable attention
against a direct computation, the id-token replacement, the release's checkpoint layout, and
generation on tiny-xl through every entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from faceid_cli.encoders.faceclip import (
    BiMultiHeadAttention,
    FaceClipConfig,
    FaceClipEncoder,
    FuserConfig,
    TextEncoderLayer,
    TextTowerConfig,
    deformable_sample,
    load_release_encoder,
    release_state_dict,
    tokenize,
)
from faceid_cli.encoders.face_vit import FaceViTConfig
from tests.conftest import DATA, FACES
from tests.helpers import changed, record_pipeline_weights, run_cli

MANIFEST = json.loads((DATA / "faceclip_encoder_keys.json").read_text())


def small_config(**changes) -> FaceClipConfig:
    config = FaceClipConfig(
        towers=(TextTowerConfig(24, 2, 2, 4.0, "quick_gelu"), TextTowerConfig(40, 2, 4, 4.0, "gelu")),
        face=FaceViTConfig(image_size=112, patch_size=16, width=32, depth=2, num_heads=2, embedding_dim=16,
                           pixel_range="zero_one"),
        fuser=FuserConfig(layers=2, deformable_heads=2, deformable_points=3, ffn_dim=32, text_heads=2,
                          text_ffn_dim=32, fusion_dim=16, fusion_heads=2),
        vocab_size=600, context_length=20, crop_size=112)
    return FaceClipConfig(**{**config.__dict__, **changes})


# ---- structure -------------------------------------------------------------------------------------
def test_full_size_encoder_has_exactly_the_release_keys_and_shapes():
    with torch.device("meta"):
        encoder = FaceClipEncoder()
    state = encoder.state_dict()
    expected = {**MANIFEST["params"], **MANIFEST["buffers"]}
    assert {k: list(v.shape) for k, v in state.items()} == expected
    assert sum(p.numel() for p in encoder.parameters()) == MANIFEST["totals"]["params_all"] == 1_573_346_948
    # the causal masks are not saved, as in the release
    assert not any(key.endswith("attn_mask") for key in state)


def test_release_checkpoint_keys_load_strictly_after_removing_model_prefix():
    state = {f"model.{key}": torch.empty(shape, device="meta") for key, shape in MANIFEST["params"].items()}
    state.update({f"model.{key}": torch.empty(shape, device="meta") for key, shape in MANIFEST["buffers"].items()})
    with torch.device("meta"):
        encoder = FaceClipEncoder()
    result = encoder.load_state_dict(release_state_dict(state), strict=True, assign=True)
    assert not result.missing_keys and not result.unexpected_keys


def test_config_round_trips_through_json():
    config = small_config()
    encoder = FaceClipEncoder(config)
    rebuilt = FaceClipEncoder(json.loads(json.dumps(encoder.config)))
    assert rebuilt.config == encoder.config
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {k: v.shape for k, v in encoder.state_dict().items()}


# ---- deformable attention --------------------------------------------------------------------------
def bilinear_reference(value: np.ndarray, x: float, y: float) -> np.ndarray:
    """value (H, W, C) sampled at normalised (x, y) with align_corners=False and zeros outside,
    written out corner by corner."""
    height, width = value.shape[:2]
    px, py = x * width - 0.5, y * height - 0.5
    x0, y0 = int(np.floor(px)), int(np.floor(py))
    out = np.zeros(value.shape[2])
    for cx, cy in ((x0, y0), (x0 + 1, y0), (x0, y0 + 1), (x0 + 1, y0 + 1)):
        weight = (1 - abs(px - cx)) * (1 - abs(py - cy))
        if 0 <= cx < width and 0 <= cy < height:
            out += weight * value[cy, cx]
    return out


def sampling_inputs(seed: int, batch: int, height: int, width: int, heads: int, dim: int, queries: int, points: int):
    """Random float64 values, locations and point weights for ``deformable_sample``; the locations
    spread beyond the grid on purpose: the zero padding is part of the contract."""
    generator = torch.Generator().manual_seed(seed)
    value = torch.randn(batch, height * width, heads, dim, generator=generator, dtype=torch.float64)
    locations = torch.rand(batch, queries, heads, points, 2, generator=generator, dtype=torch.float64) * 1.4 - 0.2
    weights = torch.rand(batch, queries, heads, points, generator=generator, dtype=torch.float64).softmax(-1)
    return value, locations, weights


def test_deformable_sampling_matches_direct_bilinear_computation():
    batch, height, width, heads, dim, queries, points = 2, 5, 4, 3, 6, 7, 4
    value, locations, weights = sampling_inputs(0, batch, height, width, heads, dim, queries, points)
    out = deformable_sample(value, (height, width), locations, weights).numpy()
    grid = value.reshape(batch, height, width, heads, dim).numpy()
    expected = np.zeros((batch, queries, heads, dim))
    for b in range(batch):
        for q in range(queries):
            for h in range(heads):
                for p in range(points):
                    x, y = locations[b, q, h, p].tolist()
                    expected[b, q, h] += weights[b, q, h, p].item() * bilinear_reference(grid[b, :, :, h], x, y)
    np.testing.assert_allclose(out, expected.reshape(batch, queries, heads * dim), atol=1e-10)


def test_deformable_sampling_is_grid_sample_in_value_and_gradient():
    # the matrix form must be exactly what grid_sample computes, gradients into the locations included
    batch, height, width, heads, dim, queries, points = 2, 6, 5, 2, 3, 9, 3
    value, locations, weights = sampling_inputs(2, batch, height, width, heads, dim, queries, points)

    def through_grid_sample(value, locations, weights):
        grid_values = value.permute(0, 2, 3, 1).reshape(batch * heads, dim, height, width)
        grid = (2 * locations - 1).permute(0, 2, 1, 3, 4).reshape(batch * heads, queries, points, 2)
        sampled = torch.nn.functional.grid_sample(grid_values, grid, mode="bilinear", padding_mode="zeros",
                                                  align_corners=False)
        mixed = (sampled * weights.permute(0, 2, 1, 3).reshape(batch * heads, 1, queries, points)).sum(-1)
        return mixed.reshape(batch, heads * dim, queries).transpose(1, 2)

    results = []
    for function in (lambda v, l, w: deformable_sample(v, (height, width), l, w), through_grid_sample):
        inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
        out = function(*inputs)
        out.pow(2).sum().backward()
        results.append((out.detach(), *(t.grad for t in inputs)))
    for ours, reference in zip(*results):
        torch.testing.assert_close(ours, reference, atol=1e-10, rtol=1e-10)


def test_bi_attention_softmaxes_one_score_matrix_both_ways():
    torch.manual_seed(3)
    attention = BiMultiHeadAttention(width=12, dim=8, heads=2).eval()
    image, text = torch.randn(2, 9, 12), torch.randn(2, 5, 12)

    def heads(x):
        return x.reshape(2, x.shape[1], 2, 4).transpose(1, 2)

    scores = heads(attention.v_proj(image)) @ heads(attention.l_proj(text)).transpose(-1, -2) / 2.0  # √4
    image_out = (scores.softmax(-1) @ heads(attention.values_l_proj(text))).transpose(1, 2).flatten(2)
    text_out = (scores.transpose(-1, -2).softmax(-1) @ heads(attention.values_v_proj(image))).transpose(1, 2).flatten(2)
    with torch.no_grad():
        got_image, got_text = attention(image, text)
        torch.testing.assert_close(got_image, attention.out_v_proj(image_out))
        torch.testing.assert_close(got_text, attention.out_l_proj(text_out))


def test_fuser_text_attention_is_multihead_attention_with_positions_on_query_and_key():
    torch.manual_seed(4)
    layer = TextEncoderLayer(16, FuserConfig(text_heads=4)).eval()
    x, pos = torch.randn(2, 7, 16), torch.randn(1, 7, 16).expand(2, -1, -1)
    with torch.no_grad():
        expected = layer.self_attn(x + pos, x + pos, x, need_weights=False)[0]
        torch.testing.assert_close(layer._attend(x, pos), expected)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_deformable_sampling_in_half_precision_keeps_its_dtype_and_values(dtype):
    generator = torch.Generator().manual_seed(1)
    value = torch.randn(1, 12 * 12, 4, 8, generator=generator)
    locations = torch.rand(1, 144, 4, 4, 2, generator=generator)
    weights = torch.rand(1, 144, 4, 4, generator=generator).softmax(-1)
    value, locations, weights = (t.to(dtype) for t in (value, locations, weights))
    # against fp32 on the same (rounded) inputs: rounding inside and of the output is all that is left
    expected = deformable_sample(value.float(), (12, 12), locations.float(), weights.float())
    out = deformable_sample(value, (12, 12), locations, weights)
    assert out.dtype == dtype and out.shape == expected.shape
    torch.testing.assert_close(out.float(), expected, atol=3e-2, rtol=1e-2)


# ---- the id token ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def word_tokenizer():
    from faceid_cli.world.tokenizer import tokenizer_for_words

    return tokenizer_for_words(["photo", "of", "a", "id", "person", ".", "as", "chef", "card", "holding", "an",
                                "the", "with", "red", "hat"], max_length=20)


@pytest.mark.parametrize("prompt", ["a person as a chef", "id card of a person", "a person holding an id",
                                    "a person " + "with a red hat " * 6])
def test_face_token_lands_on_the_prefix_id_word_and_nowhere_else(word_tokenizer, prompt):
    config = small_config()
    tokens = tokenize(word_tokenizer, [prompt, prompt], [True, False], config)
    id_token = word_tokenizer.convert_tokens_to_ids("id</w>")
    ids = tokens.input_ids
    # with a face: "<sot> photo of a id person . ..." and the face goes at 4, as in the release
    assert tokens.id_positions.tolist() == [4, -1]
    assert ids[0, 4] == id_token
    # the user's own "id" stays a word (a later position, not replaced)
    if " id" in f" {prompt}":
        assert (ids[0, 7:] == id_token).any()
    # without a face: no prefix
    assert " ".join(prompt.split()).startswith(word_tokenizer.decode(ids[1, 1: tokens.eos_positions[1]]).strip())
    # open_clip's layout: end of text last (even when cut), then id 0
    for row, end in zip(ids, tokens.eos_positions):
        assert row[end] == word_tokenizer.eos_token_id and (row[end + 1:] == 0).all()
    assert tokens.truncated == (len(prompt.split()) > 10)

    # the face changes the text states from the id position on, never before it (causal tower)
    encoder = FaceClipEncoder(small_config(vocab_size=len(word_tokenizer))).eval()
    branch = encoder.face_clip_l
    faces = [branch.encode_face(torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(s))) for s in (1, 2)]
    states = []
    for identity, patches in faces:
        hidden = {}
        handle = branch.ln_final.register_forward_hook(lambda m, i, o: hidden.setdefault("h", o))
        with torch.no_grad():
            branch(ids[:1], tokens.id_positions[:1], tokens.eos_positions[:1], identity, patches)
        handle.remove()
        states.append(hidden["h"][0])
    difference = (states[0] - states[1]).abs().amax(-1)
    assert torch.all(difference[:4] == 0) and torch.all(difference[4:tokens.eos_positions[0] + 1] > 0)


@pytest.mark.parametrize("prefix,id_word,position", [("a person , ", "person", 2), ("id person . ", "id", 1),
                                                     ("photo of a   id person.", "id", 4)])
def test_a_configured_prefix_puts_the_face_on_its_word(word_tokenizer, prefix, id_word, position):
    """model.faceclip.prefix and id_word (a base whose text model does not read the release's
    prefix): the face goes on the id word wherever it stands, the first word included."""
    config = small_config(prefix=prefix, id_word=id_word)
    tokens = tokenize(word_tokenizer, ["a person as a chef"], [True], config)
    assert tokens.id_positions.tolist() == [position]
    assert tokens.input_ids[0, position] == word_tokenizer.convert_tokens_to_ids(f"{id_word}</w>")


@pytest.mark.parametrize("prompt,position", [("S* as a chef", 2), ("a photo of S* holding an id card", 5),
                                             ("a person with S* as a chef", 5), ("S*", 2)])
def test_face_at_subject_puts_the_face_where_s_star_was_and_no_prefix(word_tokenizer, prompt, position):
    """face_at = "subject": the tower reads the prompt as the base does ("a person" for S*) and the
    face goes on the word "person" where S* stood, not on another "person" of the prompt."""
    from faceid_cli.methods.faceclip import faceclip_text

    config = small_config(prefix="a person , ", id_word="person", face_at="subject")
    text = faceclip_text(prompt, "S*")
    tokens = tokenize(word_tokenizer, [text, text], [True, False], config)
    person = word_tokenizer.convert_tokens_to_ids("person</w>")
    plain = " ".join(prompt.replace("S*", "a person").split())
    assert tokens.id_positions.tolist() == [position, -1]
    assert tokens.input_ids[0, position] == person
    # with and without the face the words are the prompt's own: no prefix
    for row, end in zip(tokens.input_ids, tokens.eos_positions):
        assert word_tokenizer.decode(row[1:end]).strip() == plain


def test_face_at_is_saved_with_the_encoder(tmp_path):
    from faceid_cli.encoders import load_encoder

    encoder = FaceClipEncoder(small_config(prefix="a person , ", id_word="person", face_at="subject"))
    encoder.save_pretrained(tmp_path / "enc")
    assert load_encoder(tmp_path / "enc").faceclip_config.face_at == "subject"
    # a checkpoint written before face_at existed reads as the release's placement
    config = json.loads((tmp_path / "enc" / "config.json").read_text())
    del config["face_at"]
    assert FaceClipEncoder.from_config(config).faceclip_config.face_at == "prefix"


def test_face_at_subject_falls_back_to_the_prefix_for_a_prompt_without_s_star(word_tokenizer):
    subject = small_config(prefix="a person , ", id_word="person", face_at="subject")
    prefix = small_config(prefix="a person , ", id_word="person")
    for config in (subject, prefix):
        tokens = tokenize(word_tokenizer, ["a person as a chef"], [True], config)
        assert tokens.id_positions.tolist() == [2]
        assert word_tokenizer.decode(tokens.input_ids[0, 1:tokens.eos_positions[0]]).startswith("a person , a person")
    with pytest.raises(ValueError, match="face_at"):
        small_config(face_at="middle")


# ---- the release's files ---------------------------------------------------------------------------
def _release_folder(tmp_path, encoder: FaceClipEncoder, unet_state: dict | None):
    folder = tmp_path / "FaceCLIP"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(encoder.config))
    torch.save({f"model.{k}": v for k, v in encoder.state_dict().items()}, folder / "face_clip_encoder.pt")
    if unet_state is not None:
        torch.save(unet_state, folder / "unet.pt")
    return folder


def test_release_layout_loads_encoder_and_unet_into_tiny_xl(tmp_path):
    from faceid_cli.methods.faceclip import METHOD
    from faceid_cli.models.tiny import TINY_CONTEXT_LENGTH, TINY_VOCAB_SIZE, build_tiny_sdxl
    from faceid_cli.pipeline_faceid import FaceIDPipeline

    torch.manual_seed(3)
    made = FaceClipEncoder(small_config(towers=(TextTowerConfig(32, 1, 2), TextTowerConfig(32, 1, 2, 4.0, "gelu")),
                                        vocab_size=TINY_VOCAB_SIZE, context_length=TINY_CONTEXT_LENGTH))
    unet = build_tiny_sdxl().unet.state_dict()
    tuned = {k: v + 0.5 for k, v in unet.items()}
    folder = _release_folder(tmp_path, made, tuned)
    pipeline = FaceIDPipeline.from_model("tiny-xl", method="faceclip", encoder=str(folder), device="cpu")
    assert pipeline.encoder.content_hash == made.content_hash
    loaded = pipeline.pipe.unet.state_dict()
    assert all(torch.equal(loaded[k], tuned[k]) for k in tuned)
    # pickles are read as weights only: one that holds code is refused with a one-line error
    torch.save({"model.x": torch.nn.Linear(2, 2)}, tmp_path / "evil.pt")
    from faceid_cli.errors import MissingModelError

    with pytest.raises(MissingModelError, match="evil.pt"):
        METHOD.load_encoder(tmp_path / "evil.pt")
    # a checkpoint of another size says so in one line
    with pytest.raises(MissingModelError, match="does not fit"):
        load_release_encoder(folder / "face_clip_encoder.pt", small_config().to_dict())


def test_missing_repo_says_where_it_was_looked_for():
    result = run_cli("generate", str(FACES / "obama.jpg"), "S* as a chef", "--model", "tiny-xl", "--method", "faceclip",
                     "--encoder", "ByteDance/FaceCLIP", "--backend", "dlib")
    assert result.exit_code == 1, result.stderr  # a missing model: the spec's exit code 1
    assert "ByteDance/FaceCLIP" in result.stderr and "CC-BY-NC" in result.stderr


# ---- generation on tiny-xl -------------------------------------------------------------------------
def _png(folder):
    from PIL import Image

    files = sorted(folder.glob("*.png"))
    assert len(files) == 1
    return np.asarray(Image.open(files[0]).convert("RGB")).astype(int)


def test_faceclip_on_tiny_xl_from_photo_identity_file_and_batch(tmp_path):
    common = ("--model", "tiny-xl", "--method", "faceclip", "--steps", "3", "--seed", "4")
    identity = tmp_path / "obama.safetensors"
    result = run_cli("encode", str(FACES / "obama.jpg"), "-o", str(identity), "--model", "tiny-xl", "--method",
                     "faceclip", "--backend", "dlib")
    assert result.exit_code == 0, result.stderr
    assert "faceclip" in result.stdout
    from faceid_cli.identity import Identity

    stored = Identity.load(identity)
    assert stored.method == "faceclip" and stored.word_dims == (32, 32)
    assert stored.tensors["face_clip_l.patches"].shape == (49, 32)  # 7x7 patches of the tiny face ViT
    outputs = {}
    for name, source, extra in (("photo", FACES / "obama.jpg", ("--backend", "dlib")), ("file", identity, ()),
                                ("other", FACES / "biden.jpg", ("--backend", "dlib")),
                                ("text-negative", identity, ("--text-negative",))):
        result = run_cli("generate", str(source), "S* as a chef", *common, *extra, "-o", str(tmp_path / name))
        assert result.exit_code == 0, result.stderr
        outputs[name] = _png(tmp_path / name)
    assert np.abs(outputs["photo"] - outputs["file"]).max() <= 1
    # another face changes the picture (a little: a random encoder's fuser starts with a layer
    # scale of 1e-4, and the face token is one input embedding among the prompt's)
    assert np.abs(outputs["photo"] - outputs["other"]).max() >= 1
    assert np.abs(outputs["file"] - outputs["text-negative"]).max() > 8  # the negative branch matters
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"face": str(identity), "prompt": "S* as a chef", "seed": 4, "name": "b"}) + "\n"
                    + json.dumps({"face": str(identity), "prompt": "S* as a chef", "seed": 4, "name": "t",
                                  "text_negative": True}) + "\n")
    result = run_cli("batch", str(jobs), "-o", str(tmp_path / "batch"), *common[:4], "--steps", "3")
    assert result.exit_code == 0, result.stderr
    made = {p.name.split("-")[0]: p for p in (tmp_path / "batch").glob("*.png")}
    from PIL import Image

    def pixels(path):
        return np.asarray(Image.open(path).convert("RGB")).astype(int)

    assert np.abs(pixels(made["b"]) - outputs["file"]).max() <= 1
    assert np.abs(pixels(made["t"]) - outputs["text-negative"]).max() <= 1  # a job's text_negative
    assert json.loads(made["t"].with_suffix(".json").read_text())["method_options"] == {"negative": "text"}


def test_faceclip_identity_is_refused_by_another_method(tmp_path):
    identity = tmp_path / "me.safetensors"
    assert run_cli("encode", str(FACES / "obama.jpg"), "-o", str(identity), "--model", "tiny-xl", "--method",
                   "faceclip", "--backend", "dlib").exit_code == 0
    result = run_cli("generate", str(identity), "S* as a chef", "--model", "tiny-xl", "--method", "m2",
                     "--steps", "2", "-o", str(tmp_path / "x"))
    assert result.exit_code != 0
    assert "--method faceclip" in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---- training ----------------------------------------------------------------------------------------
TINY_FACECLIP = ('model.faceclip={fuser = {layers = 1, deformable_heads = 2, deformable_points = 2, ffn_dim = 32, '
                 'text_heads = 2, text_ffn_dim = 32, fusion_dim = 16, fusion_heads = 2}}')


def _faceclip_config(tmp_path, *extra):
    import shutil

    from faceid_cli.train.config import load_config

    photos = tmp_path / "photos"
    photos.mkdir(exist_ok=True)
    for name in ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg"):
        shutil.copy(FACES / name, photos / name)
    return load_config(None, [
        "model.method=faceclip", "model.base=tiny-xl", TINY_FACECLIP, "model.clip=world",
        "model.backbone_config={image_size = 112, patch_size = 16, width = 32, depth = 2, num_heads = 2, "
        "embedding_dim = 16}",
        f'data.reconstruction=["{photos}"]', "data.resolution=64", "data.face_backend=dlib",
        f'output.dir="{tmp_path / "run"}"', "output.checkpoint_every=2", "output.log_every=1",
        "train.steps=2", "train.batch_size=4", "train.micro_batch_size=4", "train.learning_rate=1e-3",
        "train.unet_learning_rate=1e-3", "train.lr_warmup_steps=0", *extra])


def test_faceclip_training_steps_lower_the_loss_on_a_fixed_batch(tmp_path):
    from diffusers import DDPMScheduler

    from faceid_cli.faces.backend_dlib import DlibAnalyzer
    from faceid_cli.faces import align_face
    from faceid_cli.images import load_image
    from faceid_cli.models.registry import load_pipeline, resolve_model
    from faceid_cli.train import faceclip
    from faceid_cli.train.loop import _target_image, encode_latents

    config = _faceclip_config(tmp_path)
    pipe = load_pipeline(resolve_model("tiny-xl"), torch.device("cpu"), torch.float32)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.text_encoder_2):
        module.requires_grad_(False)
    trainee = faceclip.build(config, pipe)
    groups = faceclip.trainable_groups(trainee, config)
    optimizer = torch.optim.AdamW(groups)
    analyzer = DlibAnalyzer()
    crops, targets = [], []
    for name in ("obama.jpg", "biden.jpg", "obama2.jpg", "biden2.jpg"):
        image = load_image(FACES / name)
        face = analyzer.detect(image)[0]
        crops.append(trainee.preprocess(align_face(image, face.landmarks, trainee.crop_size, trainee.crop_zoom)))
        target = torch.from_numpy(np.asarray(image.convert("RGB").resize((64, 64)), dtype=np.float32) / 127.5 - 1)
        targets.append(target.permute(2, 0, 1))
    crops = torch.stack(crops)
    latents = encode_latents(pipe.vae, torch.stack(targets))
    images = trainee.clip_scorer.image_embeddings([_target_image(t) for t in targets])
    captions = ["a photo of S*", "S*", "a close-up photo of S*", "a photo of S* face"]

    def loss():
        value, parts = faceclip.training_loss(pipe, trainee, DDPMScheduler.from_config(pipe.scheduler.config), crops,
                                              latents, captions, torch.Generator().manual_seed(0), config,
                                              image_embeddings=images)
        return value, parts

    trainee.train()
    first, parts = loss()
    assert set(parts) == {"diffusion", "alignment"} and parts["alignment"] > 0
    for _ in range(12):
        value, _ = loss()
        optimizer.zero_grad()
        value.backward()
        optimizer.step()
    last, _ = loss()
    assert last.item() < 0.8 * first.item()


def test_faceclip_training_run_saves_what_generate_loads(tmp_path, monkeypatch):
    from faceid_cli.train import loop

    seen = record_pipeline_weights(monkeypatch, ("unet", "vae", "text_encoder", "text_encoder_2"))
    result = loop.train(_faceclip_config(tmp_path))
    # the release's recipe: the UNet fine-tunes; the VAE and the base's text encoders never change
    assert changed(seen) == {"unet": True, "vae": False, "text_encoder": False, "text_encoder_2": False}
    metrics = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics] == [1, 2] and all("alignment" in m and "diffusion" in m for m in metrics)
    encoder_dir = result.encoder_dir
    assert (encoder_dir / "model.safetensors").is_file() and (encoder_dir / "unet" / "config.json").is_file()
    images = {}
    for label, extra in (("trained", ("--encoder", str(encoder_dir))), ("random", ())):
        done = run_cli("generate", str(FACES / "obama.jpg"), "S* as a chef", "--model", "tiny-xl", "--method",
                       "faceclip", "--steps", "2", "--seed", "1", "--backend", "dlib", "-o", str(tmp_path / label),
                       *extra)
        assert done.exit_code == 0, done.stderr
        images[label] = _png(tmp_path / label)
    assert np.abs(images["trained"] - images["random"]).mean() > 0.5


def test_hf_text_tower_copied_into_open_clip_layout_gives_the_same_states():
    from faceid_cli.encoders.faceclip import copy_hf_text_tower, tower_config_from_hf
    from faceid_cli.models.tiny import build_tiny_sdxl

    pipe = build_tiny_sdxl()
    hf = pipe.text_encoder_2
    config = small_config(towers=(tower_config_from_hf(hf.config),), branch_names=("face_clip_g",),
                          vocab_size=hf.config.vocab_size, context_length=77)
    branch = FaceClipEncoder(config).face_clip_g.eval()
    copy_hf_text_tower(branch, hf)
    tokens = tokenize(pipe.tokenizer_2, ["a person as a chef"], [False], config)
    with torch.no_grad():
        hidden, pooled = branch.text_states(tokens.input_ids, tokens.id_positions, tokens.eos_positions, None)
        expected = hf(tokens.input_ids, output_hidden_states=True)
    end = int(tokens.eos_positions[0]) + 1
    torch.testing.assert_close(hidden[0, :end], expected.last_hidden_state[0, :end], atol=1e-5, rtol=1e-4)


def test_models_lists_faceclip_with_where_it_is_looked_for_and_its_licence():
    from tests.helpers import parse_json

    result = run_cli("models", "--json")
    assert result.exit_code == 0, result.stderr
    row = next(r for r in parse_json(result)["models"] if r["name"] == "faceclip")
    assert "ByteDance/FaceCLIP" in row["location"] and row["found"] is False
    assert row["license"].startswith("CC-BY-NC-4.0")


@pytest.mark.parametrize("kind", ["sigmoid", "softmax"])
def test_alignment_loss_is_low_for_matched_rows_and_treats_equal_targets_as_matches(kind):
    from faceid_cli.train.faceclip import contrastive, same

    generator = torch.Generator().manual_seed(0)
    targets = torch.nn.functional.normalize(torch.randn(6, 16, generator=generator), dim=-1)
    scale, bias = torch.tensor(2.3), torch.tensor(-2.0)
    matched = contrastive(targets, targets, scale, bias, kind)
    shuffled = contrastive(targets[torch.randperm(6, generator=generator)], targets, scale, bias, kind)
    assert matched < shuffled
    # rows 0 and 1 are one caption: as positives of each other, the loss is lower than as negatives
    doubled = torch.cat([targets[:1], targets[:1], targets[2:]])
    captions = ["a", "a", "b", "c", "d", "e"]
    assert same(captions)[0, 1] and not same(captions)[0, 2]
    with_duplicates = contrastive(doubled, doubled, scale, bias, kind, same(captions))
    without = contrastive(doubled, doubled, scale, bias, kind)
    if kind == "sigmoid":  # pushing a caption away from itself costs
        assert with_duplicates < without
    else:  # equal targets get equal logits, so the softmax cannot tell one-hot from shared labels
        torch.testing.assert_close(with_duplicates, without)


@pytest.mark.parametrize("content", [b"", b"garbage\n", b"PK\x03\x04truncated"])
def test_an_empty_fake_or_truncated_checkpoint_is_one_line_naming_the_file(tmp_path, content):
    checkpoint = tmp_path / "face_clip_encoder.pt"
    checkpoint.write_bytes(content)
    result = run_cli("generate", str(FACES / "obama.jpg"), "S* as a chef", "--model", "tiny-xl", "--method",
                     "faceclip", "--encoder", str(checkpoint), "--backend", "dlib", "-o", str(tmp_path / "o"))
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "face_clip_encoder.pt" in lines[0] and "weights_only" not in lines[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())


def test_a_fresh_encoder_takes_its_vocabulary_from_the_towers_tables_and_refuses_towers_that_differ(tmp_path):
    """A model's token table may hold more rows than its tokenizer has ids: the fresh encoder copies
    the tables, so it is sized by them. Towers whose tables differ cannot share FaceCLIP's one
    vocabulary: a one-line error, not a crash while copying."""
    from faceid_cli.errors import InvalidArgumentError
    from faceid_cli.models.registry import load_pipeline, resolve_model
    from faceid_cli.train import faceclip

    config = _faceclip_config(tmp_path)
    pipe = load_pipeline(resolve_model("tiny-xl"), torch.device("cpu"), torch.float32)
    rows = len(pipe.tokenizer_2) + 8
    for tower in (pipe.text_encoder, pipe.text_encoder_2):
        tower.resize_token_embeddings(rows)
    encoder = faceclip.build_encoder(config, pipe)
    assert encoder.config["vocab_size"] == rows
    torch.testing.assert_close(encoder.branches[-1].token_embedding.weight,
                               pipe.text_encoder_2.get_input_embeddings().weight)
    pipe.text_encoder_2.resize_token_embeddings(rows + 1)
    with pytest.raises(InvalidArgumentError, match="token tables"):
        faceclip.build_encoder(config, pipe)


# ---- starting a fresh encoder from the base ---------------------------------------------------------
def _no_face_embeds(pipe, encoder, texts):
    """What the fresh encoder gives the UNet for ``texts`` with the release's prefix but no face token."""
    from faceid_cli.methods.faceclip import faceclip_tokenizer

    tokens = tokenize(faceclip_tokenizer(pipe), texts, [True] * len(texts), encoder.faceclip_config)
    no_face = torch.full_like(tokens.id_positions, -1)
    out, base = [], []
    with torch.no_grad():
        for branch, tower in zip(encoder.branches, (pipe.text_encoder, pipe.text_encoder_2)):
            hidden, _ = branch.text_states(tokens.input_ids, no_face, tokens.eos_positions, None)
            _, patches = branch.encode_face(torch.zeros(1, 3, 112, 112))
            out.append(branch.fuse(hidden, patches.expand(len(texts), -1, -1)))
            base.append(tower(tokens.input_ids, output_hidden_states=True).hidden_states[-2])
    return torch.cat(out, -1), torch.cat(base, -1)


def test_base_start_fits_the_fuser_to_the_bases_conditioning_and_folds_the_pooled_projection(tmp_path):
    """train.faceclip_start_steps: before a fresh run, the fuser (no face) is fitted to give the
    base's own prompt_embeds for the same tokens, and a fine-tuning UNet reads the unprojected
    pooled vector as the base's UNet read the projected one. The face still changes the output."""
    import copy

    from faceid_cli.models.registry import load_pipeline, resolve_model
    from faceid_cli.train import faceclip
    from faceid_cli.train.loop import unet_conditioning

    config = _faceclip_config(tmp_path, "train.faceclip_start_steps=200")
    pipe = load_pipeline(resolve_model("tiny-xl"), torch.device("cpu"), torch.float32)
    trainee = faceclip.build(config, pipe).eval()
    original_unet = copy.deepcopy(pipe.unet)
    seen = ["a photo of S*", "S* wearing a red hat", "a pencil sketch of S*", "S* in front of a beach"]
    texts = [t.replace("S*", "a person") for t in seen]
    fused, base = _no_face_embeds(pipe, trainee.encoder, texts)
    error_before = (fused - base).pow(2).mean()
    notes = []
    figures = faceclip.start(trainee, pipe, config, seen, note=notes.append)
    fused, base = _no_face_embeds(pipe, trainee.encoder, texts)
    assert (fused - base).pow(2).mean() < 0.5 * error_before
    for name in ("face_clip_l", "face_clip_g"):
        assert figures[name]["mse_end"] < 0.5 * figures[name]["mse_start"]
    assert len(notes) == 2 and all("variance explained" in n for n in notes)
    # the pooled fold: the same UNet output from the unprojected vector as the original from the projected one
    assert figures["pooled_folded"]
    pooled = torch.randn(2, pipe.text_encoder_2.config.hidden_size)
    embeds = torch.randn(2, 77, pipe.unet.config.cross_attention_dim)
    latents, steps = torch.randn(2, 4, 8, 8), torch.tensor([10, 500])
    with torch.no_grad():
        expected = original_unet(latents, steps, **unet_conditioning(pipe, embeds, pipe.text_encoder_2.text_projection(pooled))).sample
        got = pipe.unet(latents, steps, **unet_conditioning(pipe, embeds, pooled)).sample
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # the person still enters: two faces give two conditionings
    faces = [trainee.encoder.face_features(torch.rand(1, 3, 112, 112, generator=torch.Generator().manual_seed(s)))
             for s in (1, 2)]
    with torch.no_grad():
        a, b = (trainee.encoder.condition(pipe.tokenizer_2, ["a person"], f, 1)[0] for f in faces)
    assert (a - b).abs().max() > 1e-3


def test_base_start_is_skipped_by_default_and_when_resuming(tmp_path, monkeypatch):
    from faceid_cli.train import faceclip, loop

    for folder in ("default", "start"):
        (tmp_path / folder).mkdir()
    calls = []
    real = faceclip.start
    monkeypatch.setattr(faceclip, "start", lambda *a, **k: calls.append(real(*a, **k)))
    loop.train(_faceclip_config(tmp_path / "default"))
    assert calls == [None]  # 0 steps by default: the fuser as built
    calls.clear()
    config = _faceclip_config(tmp_path / "start", "train.faceclip_start_steps=5", "train.steps=1")
    notes = []
    loop.train(config, on_note=notes.append)
    assert calls and calls[0]["steps"] == 5 and any("faceclip start" in n for n in notes)
    calls.clear()
    config["train"]["steps"] = 2
    loop.train(config, resume="latest")
    assert calls == []  # the checkpoint holds the started weights
