"""`faceid train` on the tiny model with real photos: config, data, frozen parts, checkpoints, resume."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from faceid_cli.errors import InvalidArgumentError
from faceid_cli.train.config import load_config

from .helpers import assert_one_line_error, parse_json, record_pipeline_weights, run_cli

PHOTOS = ("obama.jpg", "obama2.jpg", "biden.jpg", "biden2.jpg")


def _config(tmp_path, faces_dir, extra=(), **train):
    photos = tmp_path / "photos"
    photos.mkdir(parents=True, exist_ok=True)
    for name in PHOTOS:
        shutil.copy(faces_dir / name, photos / name)
    overrides = {"steps": 4, "batch_size": 4, "micro_batch_size": 2, "learning_rate": 1e-3, "lr_warmup_steps": 0,
                 **train}
    return load_config(None, [
        "model.base=tiny", "model.hidden_dim=64",
        "model.backbone_config={image_size = 112, patch_size = 16, width = 32, depth = 4, num_heads = 2, "
        "embedding_dim = 64}",
        f'data.reconstruction=["{photos}"]', "data.resolution=64",
        f'output.dir="{tmp_path / "run"}"', "output.checkpoint_every=2", "output.keep_checkpoints=2",
        "output.log_every=1",
        *(f"train.{k}={json.dumps(v)}" for k, v in overrides.items()), *extra,
    ])


def test_print_config_shows_the_papers_defaults():
    result = run_cli("train", "--print-config")
    assert result.exit_code == 0, result.stderr
    config = tomllib.loads(result.stdout)
    assert config["train"]["learning_rate"] == 5e-5 and config["train"]["batch_size"] == 64
    assert config["train"]["steps"] == 60_000 and config["data"]["resolution"] == 512
    assert config["model"]["num_words"] == 2 and config["train"]["reg_weight"] == 1e-4
    assert config["model"]["base"] == "sd21-base"


def test_set_overrides_and_the_printed_config_reads_back(tmp_path):
    result = run_cli("train", "--print-config", "--set", "train.steps=7", "--set", "model.base=world")
    config = tomllib.loads(result.stdout)
    assert config["train"]["steps"] == 7 and config["model"]["base"] == "world"
    saved = tmp_path / "c.toml"
    saved.write_text(result.stdout)
    assert load_config(saved) == load_config(None, ["train.steps=7", "model.base=world"])


@pytest.mark.parametrize("text,name", [("[train]\nstepz = 3\n", "train.stepz"), ("[trian]\nsteps = 3\n", "trian"),
                                       ("[model.backbone]\n", "model.backbone")])
def test_an_unknown_key_fails_with_its_name(tmp_path, text, name):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    assert_one_line_error(run_cli("train", path, "--print-config"), 2, f"'{name}'")


def test_open_tables_merge_the_file_and_each_set_and_their_reader_checks_their_keys(tmp_path):
    """model.faceclip takes FaceCLIP's own keys (none in the defaults): a --set adds to what the
    file holds, and a key FaceCLIP does not take fails with its name before any work."""
    path = tmp_path / "c.toml"
    path.write_text('[model]\nmethod = "faceclip"\nfaceclip = {fuser = {layers = 2}}\n')
    config = load_config(path, ['model.faceclip.prefix="a person , "', "model.faceclip.id_word=\"person\"",
                                "model.faceclip.fuser.text_heads=2"])
    assert config["model"]["faceclip"] == {"fuser": {"layers": 2, "text_heads": 2}, "prefix": "a person , ",
                                           "id_word": "person"}
    for assignment, fragment in (("model.faceclip.prefx=1", "'model.faceclip.prefx'"),
                                 ("model.faceclip.fuser.lyers=1", "'model.faceclip.fuser.lyers'"),
                                 ('model.faceclip.prefix="no face here"', "no word 'id'"),
                                 ('model.faceclip.face_at="middle"', "prefix, subject")):
        assert_one_line_error(run_cli("train", path, "--print-config", "--set", assignment), 2, fragment)


def test_bad_values_fail_before_any_work(tmp_path):
    assert_one_line_error(run_cli("train", "--print-config", "--set", "train.batch_size=6"), 2, "multiple")
    assert_one_line_error(run_cli("train", "--print-config", "--report-to", "mlflow"), 2, "report_to")
    assert_one_line_error(run_cli("train", "--print-config", "--set", "train.backbone=some"), 2, "last:N")
    for key in ("train.face_loss_weight", "train.reg_weight"):
        assert_one_line_error(run_cli("train", "--print-config", "--set", f"{key}=-1"), 2, f"{key} = -1")


@pytest.mark.parametrize("assignment,fragment", [
    ("train.learning_rate=-5e-5", "train.learning_rate = -5e-05 must be 0 or more"),
    ("train.unet_learning_rate=-1e-5", "train.unet_learning_rate = -1e-05 must be 0 or more"),
    ("train.reg_weight=nan", "train.reg_weight = nan must be 0 or more"),
    ("train.max_grad_norm=-1", "train.max_grad_norm = -1 must be 0 or more"),
    ("train.steps=1.5", "train.steps = 1.5 must be a positive integer"),
    ("output.checkpoint_every=-1", "output.checkpoint_every = -1 must be a whole number, 0 or more"),
    ("output.validate_every=2.5", "output.validate_every"),
    ("output.log_every=0", "output.log_every = 0 must be a positive integer"),
    ("output.keep_checkpoints=0", "output.keep_checkpoints"),
    ("data.resolution=0", "data.resolution"),
    ("data.workers=-1", "data.workers = -1 must be a whole number, 0 or more"),
    ("model.num_words=0", "model.num_words = 0 must be a positive integer"),
])
def test_numbers_out_of_range_are_refused_with_their_names(assignment, fragment):
    assert_one_line_error(run_cli("train", "--print-config", "--set", assignment), 2, fragment)


def test_numbers_at_their_edges_are_accepted():
    result = run_cli("train", "--print-config", "--set", "train.max_grad_norm=0", "--set", "train.lr_warmup_steps=0",
                     "--set", "train.weight_decay=0", "--set", "train.learning_rate=0", "--set",
                     "output.validate_every=0", "--set", "output.checkpoint_every=0")
    assert result.exit_code == 0, result.stderr
    assert "max_grad_norm = 0" in result.stdout and "\nlearning_rate = 0\n" in result.stdout


def test_a_tiny_run_writes_checkpoints_generate_loads_and_leaves_the_base_frozen(tmp_path, faces_dir, monkeypatch):
    from faceid_cli.train import loop

    seen = record_pipeline_weights(monkeypatch, ("unet", "vae", "text_encoder"))
    validation = f'[{{face = "{faces_dir / "biden.jpg"}", prompt = "S* as a chef"}}]'
    config = _config(tmp_path, faces_dir, extra=[f"output.validation={validation}", "output.validate_every=2",
                                                 "output.validation_steps=2"])
    result = loop.train(config)
    for name, before in seen["before"].items():
        after = getattr(seen["pipe"], name).state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), f"{name} changed"
    out = tmp_path / "run"
    steps = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert steps == ["step-0000002", "step-0000004"]
    for step in steps:
        folder = out / "checkpoints" / step
        assert (folder / "complete.json").is_file() and (folder / "encoder" / "model.safetensors").is_file()
        assert tomllib.loads((folder / "config.toml").read_text())["train"]["steps"] == 4
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]
    assert result.data["items"] == 4
    for step in (2, 4):  # a contact sheet per validation step: reference, then the generation
        with Image.open(out / "validation" / f"step-{step:07d}.png") as sheet:
            assert sheet.width > 2 * 192
    with Image.open(out / "loss.png") as plot:
        assert plot.size == (720, 360) and len(np.unique(np.asarray(plot).reshape(-1, 3), axis=0)) > 3
    # the frozen backbone, its BatchNorm statistics included, is the same after the step-2 validation
    weights = {step: load_file(out / "checkpoints" / f"step-000000{step}" / "encoder" / "model.safetensors")
               for step in (2, 4)}
    backbone = [k for k in weights[2] if k.startswith("backbone.")]
    assert any("running_mean" in k for k in backbone)
    assert all(torch.equal(weights[2][k], weights[4][k]) for k in backbone)
    # the trained encoder's words differ from the untrained one's, and generate takes it
    trained = out / "checkpoints" / "step-0000004" / "encoder"
    images = {}
    for label, extra in (("trained", ("--encoder", trained)), ("random", ())):
        done = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--steps", "2", "--seed", "1", "--json",
                       "-o", tmp_path / label, *extra)
        assert done.exit_code == 0, done.stderr
        with Image.open(parse_json(done)["images"][0]) as image:
            images[label] = np.asarray(image).astype(int)
    assert np.abs(images["trained"] - images["random"]).mean() > 0.5
    # --encoder takes the run's folder (its final encoder) and a checkpoint folder (its encoder)
    for label, given in (("run", out), ("checkpoint", out / "checkpoints" / "step-0000004")):
        done = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--steps", "2", "--seed", "1", "--json",
                       "-o", tmp_path / label, "--encoder", given)
        assert done.exit_code == 0, done.stderr
        with Image.open(parse_json(done)["images"][0]) as image:
            assert np.array_equal(np.asarray(image).astype(int), images["trained"])


@pytest.mark.parametrize("native", [False, True])
def test_auto_precision_is_bf16_only_where_the_cpu_has_it_and_the_saved_config_says_which(tmp_path, faces_dir,
                                                                                          monkeypatch, native):
    """Emulated bfloat16 is far slower than fp32 (a world step 7.6 s against 0.35 s on an
    AVX2-only CPU): "auto" autocasts only where the hardware computes it."""
    from faceid_cli.models import precision
    from faceid_cli.train import loop

    monkeypatch.setattr(precision, "cpu_bf16_supported", lambda: native)
    config = _config(tmp_path, faces_dir, steps=2, micro_batch_size=4, mixed_precision="auto")
    notes = []
    loop.train(config, on_note=notes.append)
    assert ("mixed precision auto: bf16 (this cpu computes native bfloat16)" if native
            else "mixed precision auto: fp32 (this cpu has no native bfloat16)") in notes
    saved = tomllib.loads((tmp_path / "run" / "checkpoints" / "step-0000002" / "config.toml").read_text())
    assert saved["train"]["mixed_precision"] == ("bf16" if native else "no")
    assert config["train"]["mixed_precision"] == "auto"  # the caller's config is left as given
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: native)
    assert precision.resolve_mixed_precision("auto", cuda) == ("bf16" if native else "no")
    assert precision.resolve_mixed_precision("fp16", cuda) == "fp16"


def test_resume_after_an_interruption_ends_bit_identical(tmp_path, faces_dir):
    from faceid_cli.train import loop

    whole = loop.train(_config(tmp_path / "a", faces_dir))

    def interrupt(record):
        if record["step"] == 3:  # the step-2 checkpoint is complete; step 3 is lost
            raise KeyboardInterrupt

    config = _config(tmp_path / "b", faces_dir)
    with pytest.raises(KeyboardInterrupt):
        loop.train(config, on_step=interrupt)
    assert [p.name for p in loop.checkpoint_dirs(tmp_path / "b" / "run")] == ["step-0000002"]
    resumed = loop.train(config, resume="latest")
    first, second = load_file(str(whole.encoder_dir / "model.safetensors")), load_file(
        str(resumed.encoder_dir / "model.safetensors"))
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert [m["loss"] for m in whole.metrics[2:]] == [m["loss"] for m in resumed.metrics]


def test_a_frozen_backbone_reads_each_face_once_and_trains_as_without_the_cache(tmp_path, faces_dir, monkeypatch):
    from faceid_cli.encoders.m2 import M2IDEncoder
    from faceid_cli.train import loop

    calls = []
    features = M2IDEncoder.features
    monkeypatch.setattr(M2IDEncoder, "features", lambda self, pixels: calls.append(len(pixels)) or features(self, pixels))
    cached = loop.train(_config(tmp_path / "a", faces_dir, steps=6))
    # 6 steps x 4 faces drawn from 4 photos: each photo's crop meets the backbone once
    assert sum(calls) <= len(PHOTOS) and set(calls) == {1}
    calls.clear()
    plain = loop.train(_config(tmp_path / "b", faces_dir, ["data.cache_features=false"], steps=6))
    assert sum(calls) == 6 * 4
    # the same training up to float rounding (features of one crop alone against in a batch)
    np.testing.assert_allclose([m["loss"] for m in cached.metrics], [m["loss"] for m in plain.metrics], rtol=1e-4)


def test_eager_attention_trains_as_the_fused_one_and_leaves_the_base_as_it_was(tmp_path, faces_dir, monkeypatch):
    """``train.attention = "eager"`` (plain matrix products, faster on a CPU for short sequences)
    changes only how the frozen base computes attention while it trains: the same losses up to
    float rounding, and the pipeline's own attention afterwards."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    from faceid_cli.models import registry
    from faceid_cli.train import loop

    seen = []
    load = registry.load_pipeline

    def loading(*args, **kwargs):
        pipe = load(*args, **kwargs)
        seen.append(pipe)
        return pipe

    monkeypatch.setattr(registry, "load_pipeline", loading)
    fused = loop.train(_config(tmp_path / "a", faces_dir, steps=3))
    eager = loop.train(_config(tmp_path / "b", faces_dir, steps=3, attention="eager"))
    np.testing.assert_allclose([m["loss"] for m in eager.metrics], [m["loss"] for m in fused.metrics], rtol=1e-4)
    pipe = seen[-1]
    assert all(isinstance(p, AttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    assert pipe.text_encoder.config._attn_implementation == "sdpa"
    with pytest.raises(InvalidArgumentError, match="train.attention"):
        _config(tmp_path / "c", faces_dir, steps=1, attention="flash")


def test_a_checkpoint_cut_off_by_a_kill_is_never_resumed(tmp_path, faces_dir):
    from faceid_cli.train import loop

    config = _config(tmp_path, faces_dir, steps=2)
    loop.train(config)
    out = tmp_path / "run"
    half = out / "checkpoints" / "step-0000009"
    shutil.copytree(out / "checkpoints" / "step-0000002", half)
    (half / "complete.json").unlink()  # what a kill during saving leaves
    assert [p.name for p in loop.checkpoint_dirs(out)] == ["step-0000002"]


def test_a_fresh_run_into_a_used_output_folder_fails_and_changes_nothing(tmp_path, faces_dir):
    from faceid_cli.train import loop
    from faceid_cli.train.config import dumps_toml

    config = _config(tmp_path, faces_dir, steps=2)
    loop.train(config)
    out = tmp_path / "run"
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(config))
    assert_one_line_error(run_cli("train", saved), 2, str(out))
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    resumed = run_cli("train", saved, "--resume", "latest", "--set", "train.steps=3")
    assert resumed.exit_code == 0, resumed.stderr
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    # a run killed before its first checkpoint left metrics only: --resume latest starts over cleanly
    shutil.rmtree(out / "checkpoints")
    assert run_cli("train", saved, "--resume", "latest").exit_code == 0
    assert [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_resume_that_names_no_checkpoint_fails_before_any_work(tmp_path, faces_dir):
    from faceid_cli.train.config import dumps_toml

    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(_config(tmp_path, faces_dir, steps=2)))
    assert_one_line_error(run_cli("train", saved, "--resume", tmp_path / "nowhere"), 2, "nowhere")
    assert not (tmp_path / "run").exists()  # no face was detected, no model loaded, no folder left
    # a folder that was there before is left as it was
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    assert_one_line_error(run_cli("train", saved, "--resume", tmp_path / "nowhere"), 2, "nowhere")
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def test_a_run_whose_base_model_is_missing_leaves_no_output_folder(tmp_path, faces_dir):
    from faceid_cli.train.config import dumps_toml

    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(_config(tmp_path, faces_dir, extra=[f'model.base="{tmp_path / "no-model"}"'])))
    result = run_cli("train", saved)
    assert result.exit_code in (1, 2) and "no-model" in result.stderr, result.stderr
    assert not (tmp_path / "run").exists()


def test_a_base_missing_from_the_cache_names_the_flag_that_fetches_it(tmp_path, faces_dir, monkeypatch):
    from faceid_cli.errors import MissingModelError
    from faceid_cli.models import registry
    from faceid_cli.train.config import dumps_toml

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(_config(tmp_path, faces_dir, extra=['model.base="sd21-base"'])))
    assert_one_line_error(run_cli("train", saved), 1, "sd21-base", "not in the Hugging Face cache", "--allow-download")
    asked = []

    def no_network(ref, device, dtype, allow_download=False):
        asked.append(allow_download)
        raise MissingModelError("no network here", "try elsewhere")

    monkeypatch.setattr(registry, "load_pipeline", no_network)
    assert_one_line_error(run_cli("train", saved, "--allow-download"), 1, "no network here")
    assert asked == [True]


def test_unreadable_and_faceless_photos_are_skipped_and_counted(tmp_path, faces_dir):
    from faceid_cli.train import loop

    config = _config(tmp_path, faces_dir, steps=1)
    photos = tmp_path / "photos"
    (photos / "empty.jpg").write_bytes(b"")
    (photos / "fake.png").write_text("not an image")
    Image.new("RGB", (200, 200), (120, 130, 140)).save(photos / "wall.png")
    result = loop.train(config)
    assert result.data["items"] == len(PHOTOS)
    assert result.data["skipped"] == {"unreadable image": 2, "no face found": 1}
    assert json.loads((tmp_path / "run" / "data.json").read_text())["skipped"]["no face found"] == 1


def test_captioned_photos_train_on_their_own_captions_and_the_uncaptioned_are_skipped_and_counted(
        tmp_path, faces_dir, monkeypatch):
    """data.captions = "metadata": each photo's caption from the nearest imagefolder metadata file
    (its folder's, else a folder above); a photo with no row or a caption without S* is skipped
    with that reason, and no template is ever drawn."""
    from faceid_cli.train import data as training_data
    from faceid_cli.train import loop

    config = _config(tmp_path, faces_dir, ["data.captions=\"metadata\""], steps=2)
    photos = tmp_path / "photos"
    (photos / "sub").mkdir()
    shutil.move(photos / "biden2.jpg", photos / "sub" / "biden2.jpg")
    rows = [{"file_name": "obama.jpg", "text": "S* at a desk"}, {"file_name": "obama2.jpg", "text": "a man at a desk"},
            {"file_name": "sub/biden2.jpg", "text": "S* in a garden"}]  # biden.jpg: no row
    (photos / "metadata.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    seen = []
    caption_for = training_data.caption_for
    monkeypatch.setattr(training_data, "caption_for", lambda *a: seen.append(caption_for(*a)) or seen[-1])
    result = loop.train(config)
    assert result.data["items"] == 2
    assert result.data["skipped"] == {"caption without S*": 1, "no caption": 1}
    assert Path(result.data["skipped_examples"]["no caption"]).name == "biden.jpg"
    assert len(seen) == 2 * 4 and set(seen) <= {"S* at a desk", "S* in a garden"}
    index = [json.loads(line) for line in (tmp_path / "run" / "cache" / "index.jsonl").read_text().splitlines()]
    assert {Path(e["source"]).name: e["prompt"] for e in index} == {"obama.jpg": "S* at a desk",
                                                                   "biden2.jpg": "S* in a garden"}


def test_captioned_photos_without_a_caption_file_fail_before_the_base_loads(tmp_path, faces_dir):
    from faceid_cli.train.config import dumps_toml

    config = _config(tmp_path, faces_dir, ["data.captions=\"metadata\"", f'model.base="{tmp_path / "no-such-base"}"'])
    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(config))
    line = assert_one_line_error(run_cli("train", saved), 1, f"every photo was skipped ({len(PHOTOS)} no metadata file)",
                                 "metadata.jsonl")
    assert "no-such-base" not in line and not (tmp_path / "run").exists()


def test_caption_files_are_read_as_imagefolder_writes_them(tmp_path):
    """metadata.csv as well as .jsonl, another column by data.caption_column, the nearest file
    winning, and a broken file failing with its line."""
    from faceid_cli.train.data import captioned_sources

    (tmp_path / "a").mkdir()
    for name in ("a/x.png", "y.png", "z.png"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "metadata.csv").write_text('file_name,caption\ny.png,"S*, smiling"\na/x.png,S* far\nz.png,\n'
                                           'q.png,"S* on\ntwo lines"\n')
    (tmp_path / "q.png").write_bytes(b"")
    assert captioned_sources([tmp_path / "q.png"], "caption", "S*")[0].prompt == "S* on\ntwo lines"
    (tmp_path / "a" / "metadata.jsonl").write_text(json.dumps({"file_name": "x.png", "caption": "S* near"}) + "\n")
    sources = captioned_sources([tmp_path / "a" / "x.png", tmp_path / "y.png", tmp_path / "z.png"], "caption", "S*",
                                roots=[tmp_path])
    assert [(s.prompt, s.skipped) for s in sources] == [("S* near", None), ("S*, smiling", None), (None, "no caption")]
    (tmp_path / "a" / "metadata.jsonl").unlink()  # the file above serves a photo in a sub-folder of the root
    assert captioned_sources([tmp_path / "a" / "x.png"], "caption", "S*", roots=[tmp_path])[0].prompt == "S* far"
    # named on its own, or found under a root below the file, a photo reads only what is beside it
    assert captioned_sources([tmp_path / "a" / "x.png"], "caption", "S*")[0].skipped == "no metadata file"
    assert captioned_sources([tmp_path / "a" / "x.png"], "caption", "S*", roots=[tmp_path / "a"])[0].skipped == \
        "no metadata file"
    # a photo linked into a captioned folder is captioned there, as it is listed
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "v.png").symlink_to(tmp_path / "z.png")
    (tmp_path / "linked" / "metadata.jsonl").write_text(json.dumps({"file_name": "v.png", "caption": "S* linked"}))
    assert captioned_sources([tmp_path / "linked" / "v.png"], "caption", "S*")[0].prompt == "S* linked"
    with pytest.raises(InvalidArgumentError, match="metadata.csv:2 has no 'text' column"):
        captioned_sources([tmp_path / "y.png"], "text", "S*")
    (tmp_path / "a" / "metadata.jsonl").write_text('{"file_name": "x.png", "caption": "S*"}\n{"file_name": \n')
    with pytest.raises(InvalidArgumentError, match=r"metadata.jsonl:2 is not a JSON line"):
        captioned_sources([tmp_path / "a" / "x.png"], "caption", "S*")


def test_the_target_is_the_square_around_the_face_and_the_box_maps_into_it():
    from faceid_cli.train.data import box_in_target, square_around

    # a tall 100x300 portrait with the face at the top: the square holds the face, not the chest
    assert square_around((100, 300), (30, 20, 70, 70)) == (0, 0, 100)
    assert square_around((100, 300)) == (0, 100, 100)  # no face: the middle
    # a wide 200x100 photo, face left of centre: the square centres on it (x from 25)
    assert square_around((200, 100), (50, 10, 100, 60)) == (25, 0, 100)
    assert box_in_target((50, 10, 100, 60), (200, 100), 64) == [16.0, 6.4, 48.0, 38.4]
    assert box_in_target((0, -5, 60, 50), (200, 100), 64) == [0.0, 0.0, 38.4, 32.0]  # clipped to the square


def test_the_weighted_loss_is_the_plain_mse_under_even_weights_and_follows_the_weights():
    from faceid_cli.train.loss_weights import weighted_mse

    generator = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(2, 4, 8, 8, generator=generator), torch.randn(2, 4, 8, 8, generator=generator)
    plain = torch.nn.functional.mse_loss(prediction, target)
    assert torch.allclose(weighted_mse(prediction, target), plain)
    assert torch.allclose(weighted_mse(prediction, target, torch.full((2, 1, 8, 8), 3.0)), plain)
    # all the weight on one cell: the loss is that cell's squared error, averaged over channels and samples
    only = torch.zeros(2, 1, 8, 8)
    only[:, :, 2, 5] = 1.0
    expected = (prediction - target)[:, :, 2, 5].pow(2).mean()
    assert torch.allclose(weighted_mse(prediction, target, only), expected)


def test_a_face_weighted_run_records_each_targets_face_box_and_trains_on_it(tmp_path, faces_dir, monkeypatch):
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image
    from faceid_cli.train import loop
    from faceid_cli.train.data import box_in_target
    from faceid_cli.train.loss_weights import face_loss_weights

    # a triplet whose edited image has no face: it still trains, its loss weighed evenly
    wall = tmp_path / "wall.png"
    Image.new("RGB", (128, 128), (120, 130, 140)).save(wall)
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"face": str(faces_dir / "biden.jpg"), "prompt": "S* by a wall",
                                    "image": str(wall)}) + "\n")
    extra = [f'data.triplets=["{manifest}"]', "data.triplet_fraction=0.5"]
    seen = []
    weighted_mse = loop.weighted_mse
    monkeypatch.setattr(loop, "weighted_mse", lambda p, t, w=None: seen.append(w) or weighted_mse(p, t, w))
    weighted = loop.train(_config(tmp_path / "a", faces_dir, extra, steps=2, face_loss_weight=4.0))
    assert len(seen) == 4 and all(w is not None for w in seen)  # 2 steps x 2 micro-batches
    plain = loop.train(_config(tmp_path / "b", faces_dir, extra, steps=2))
    assert seen[4:] == [None] * 4
    entries = [json.loads(line) for line in (tmp_path / "a" / "run" / "cache" / "index.jsonl").read_text().splitlines()]
    boxes = {Path(e["source"]).name: e["target_box"] for e in entries if e["kind"] == "reconstruction"}
    assert [e["target_box"] for e in entries if e["kind"] == "triplet"] == [None]
    analyzer = load_analyzer("auto")
    for name in PHOTOS:
        image = load_image(tmp_path / "a" / "photos" / name)
        face = analyzer.detect(image)[0]
        assert boxes[name] == box_in_target(face.bbox, image.size, 64)
        x1, y1, x2, y2 = boxes[name]
        assert 0 <= x1 < x2 <= 64 and 0 <= y1 < y2 <= 64 and (x2 - x1) * (y2 - y1) < 64 * 64
    # a photo weighs 1 + 4 on the latent cells under its face box and 1 elsewhere; the faceless
    # triplet 1 everywhere; both were drawn
    face_cells = {int((w == 5).sum()) for w in
                  (face_loss_weights(torch.tensor([box]), seen[0].shape[-1], 64, 4.0) for box in boxes.values())}
    rows = [row for weights in seen[:4] for row in weights.flatten(1).tolist()]
    assert all(set(row) == {1.0} or (set(row) == {1.0, 5.0} and row.count(5.0) in face_cells) for row in rows)
    assert {max(row) for row in rows} == {1.0, 5.0}
    # the same draws, noise and words at step 1: only the weighting differs
    assert weighted.metrics[0]["diffusion"] != plain.metrics[0]["diffusion"]
    assert weighted.metrics[0]["word_norm"] == pytest.approx(plain.metrics[0]["word_norm"], rel=1e-5)


@pytest.mark.parametrize("name", ["sd21-base", "sdxl", "world", "faceclip-sdxl", "world-faceclip", "world-clip-image",
                                  "world-selfaug"])
def test_the_shipped_configs_load(name):
    from pathlib import Path

    config = load_config(Path(__file__).parents[1] / "configs" / f"{name}.toml")
    assert config["model"]["num_words"] == (1 if name == "world-clip-image" else 2)
    if name == "world-clip-image":  # the M² world run's settings but for the encoder
        world = load_config(Path(__file__).parents[1] / "configs" / "world.toml")
        assert config["train"] == world["train"] and config["data"] == {**world["data"], "captions": "templates"}
        assert config["model"]["method"] == "clip-image" and config["model"]["clip"] == "world"
    elif name == "world-selfaug":  # the world run with the paper's second data source, nothing else changed
        world = load_config(Path(__file__).parents[1] / "configs" / "world.toml")
        assert config["model"] == world["model"] and config["train"] == world["train"]
        assert config["data"] == {**world["data"], "triplets": ["world-data/selfaug/manifest.jsonl"],
                                  "triplet_fraction": 0.5}
    elif "faceclip" in name:
        assert config["model"]["method"] == "faceclip" and "unet" in config["train"]["faceclip_trains"]
    elif name != "world":  # the paper's numbers
        assert config["train"]["learning_rate"] == 5e-5 and config["train"]["batch_size"] == 64
        assert config["train"]["steps"] == 60_000


def _tiny_encoder(backbone="frozen", features="multi-scale", backbone_path=None):
    from faceid_cli.train.loop import build_encoder_for, trainable_parameters

    overrides = ["model.hidden_dim=32", f"train.backbone={backbone}", f"model.features={features}",
                 "model.backbone_config={image_size = 112, patch_size = 16, width = 32, depth = 4, num_heads = 2, "
                 "embedding_dim = 64}"]
    if backbone_path:
        overrides.append(f'model.backbone="{backbone_path}"')
    config = load_config(None, overrides)
    torch.manual_seed(0)
    encoder = build_encoder_for(config, (32,))
    return encoder, trainable_parameters(encoder, config)


def test_the_backbone_trains_only_as_asked():
    encoder, groups = _tiny_encoder("last:1")
    trained = {name for name, p in encoder.named_parameters() if p.requires_grad}
    assert any(n.startswith("backbone.blocks.3.") for n in trained)
    assert not any(n.startswith(("backbone.blocks.0.", "backbone.blocks.2.", "backbone.patch_embed")) for n in trained)
    assert [g["name"] for g in groups] == ["heads", "backbone"]
    frozen, groups = _tiny_encoder("frozen")
    assert not any(p.requires_grad for p in frozen.backbone.parameters()) and len(groups) == 1
    everything, _ = _tiny_encoder("all")
    assert all(p.requires_grad for p in everything.backbone.parameters())
    with pytest.raises(Exception, match="has 4 blocks"):
        _tiny_encoder("last:9")


def test_last_layer_features_are_the_identity_embedding_only():
    multi, _ = _tiny_encoder()
    last, _ = _tiny_encoder(features="last")
    pixels = torch.rand(2, 3, 112, 112)
    assert last.features(pixels).shape == (2, 64)
    assert multi.features(pixels).shape[1] > 64


def test_gradient_checkpointing_gives_the_same_gradients():
    encoder, _ = _tiny_encoder("all")
    pixels = torch.rand(2, 3, 112, 112)
    grads = []
    for checkpointing in (False, True):
        encoder.zero_grad()
        encoder.backbone.gradient_checkpointing = checkpointing
        encoder(pixels).square().sum().backward()
        grads.append([p.grad.clone() for p in encoder.backbone.parameters() if p.grad is not None])
    assert len(grads[0]) == len(grads[1]) > 0
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_a_backbone_that_does_not_fit_names_its_keys(tmp_path):
    from safetensors.torch import save_file

    encoder, _ = _tiny_encoder()
    state = {k: v.clone() for k, v in encoder.backbone.state_dict().items()}
    state["blocks.9.attn.qkv.weight"] = torch.zeros(3)
    del state["norm.weight"]
    path = tmp_path / "vit.safetensors"
    save_file(state, str(path))
    with pytest.raises(Exception) as caught:
        _tiny_encoder(backbone_path=path)
    assert "blocks.9.attn.qkv.weight" in str(caught.value) and "norm.weight" in str(caught.value)
    good = tmp_path / "good.safetensors"
    save_file({k: v.clone() for k, v in encoder.backbone.state_dict().items()}, str(good))
    loaded, _ = _tiny_encoder(backbone_path=good)
    assert all(torch.equal(a, b) for a, b in zip(loaded.backbone.state_dict().values(),
                                                  encoder.backbone.state_dict().values()))


def test_the_clip_baseline_trains_its_projection_on_a_frozen_clip_tower(tmp_path, faces_dir):
    """model.method = "clip-image": the paper's baseline learns through the same loop and loads in
    generate; CLIP's image tower (the world's CLIP here) is exactly the scorer's before and after."""
    from faceid_cli.evaluate.clip_scorer import ClipScorer
    from faceid_cli.encoders import load_encoder
    from faceid_cli.train import loop

    config = _config(tmp_path, faces_dir, extra=["model.method=clip-image", "model.clip=world", "model.num_words=1"])
    result = loop.train(config)
    encoder = load_encoder(result.encoder_dir)
    assert encoder.encoder_type == "clip-image" and encoder.num_words == 1 and encoder.crop_size == 64
    clip = ClipScorer.from_pretrained("world").model.vision_model.state_dict()
    tower = encoder.vision.state_dict()
    assert set(tower) == set(clip) and all(torch.equal(tower[k], clip[k]) for k in clip)
    first = load_encoder(tmp_path / "run" / "checkpoints" / "step-0000002" / "encoder")
    assert not torch.equal(first.projection.weight, encoder.projection.weight)  # the projection learned
    done = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--method", "clip-image", "--encoder",
                   result.encoder_dir, "--steps", "2", "--json", "-o", tmp_path / "out")
    assert done.exit_code == 0, done.stderr
    assert len(parse_json(done)["images"]) == 1


def test_the_clip_baseline_unfreezes_only_the_layers_asked():
    from faceid_cli.train import clip_image

    def trained(setting):
        config = load_config(None, ["model.method=clip-image", "model.clip=world", "model.base=tiny",
                                    f"train.backbone={setting}"])
        from faceid_cli.models.registry import load_pipeline, resolve_model

        encoder = clip_image.build(config, load_pipeline(resolve_model("tiny"), "cpu", torch.float32))
        groups = clip_image.trainable_groups(encoder, config)
        return {n for n, p in encoder.named_parameters() if p.requires_grad}, [g["name"] for g in groups]

    names, groups = trained("frozen")
    assert groups == ["projection"] and names == {"projection.weight", "projection.bias"}
    names, groups = trained("last:1")
    assert groups == ["projection", "backbone"]
    assert any(".layers.3." in n for n in names) and not any(".layers.2." in n or "embeddings" in n for n in names)
    with pytest.raises(Exception, match="has 4 layers"):
        trained("last:9")


def test_data_with_no_usable_photo_fails_naming_the_data_paths(tmp_path, faces_dir):
    from faceid_cli.train.config import dumps_toml

    config = _config(tmp_path, faces_dir, steps=1)
    photos = tmp_path / "photos"
    for path in photos.iterdir():
        path.unlink()
    (photos / "empty.jpg").write_bytes(b"")
    saved = tmp_path / "config.toml"
    saved.write_text(dumps_toml(config))
    result = run_cli("train", saved)
    assert result.exit_code == 1, result.stderr  # valid arguments; the work failed on its data
    last = result.stderr.strip().splitlines()[-1]
    assert "every photo was skipped (1 unreadable image)" in last and str(photos) in last, last
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_every_n_steps_events_happen_each_n_and_at_the_end_and_0_means_the_end_only():
    from faceid_cli.train.loop import _due

    assert [step for step in range(1, 11) if _due(step, 4, 10)] == [4, 8, 10]
    assert [step for step in range(1, 11) if _due(step, 0, 10)] == [10]
    assert [step for step in range(1, 11) if _due(step, 1, 10)] == list(range(1, 11))


def test_a_run_folder_leads_to_its_final_encoder_or_its_newest_complete_checkpoint(tmp_path):
    from faceid_cli.train.layout import trained_encoder

    run = tmp_path / "run"
    for step, complete in ((2, True), (4, True), (6, False)):  # step 6: cut short by a kill
        encoder = run / "checkpoints" / f"step-{step:07d}" / "encoder"
        encoder.mkdir(parents=True)
        (encoder / "model.safetensors").write_bytes(b"")
        if complete:
            (encoder.parent / "complete.json").write_text("{}")
    assert trained_encoder(run) == run / "checkpoints" / "step-0000004" / "encoder"
    assert trained_encoder(run / "checkpoints" / "step-0000002") == run / "checkpoints" / "step-0000002" / "encoder"
    (run / "encoder").mkdir()
    (run / "encoder" / "model.safetensors").write_bytes(b"")
    assert trained_encoder(run) == run / "encoder"  # the run has ended: its final encoder
    for itself in (run / "encoder", tmp_path / "w.safetensors", tmp_path / "empty"):
        assert trained_encoder(itself) == itself
