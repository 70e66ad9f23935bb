"""`faceid encode` and `faceid generate` end to end on the tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid_cli.generate import read_parameters
from faceid_cli.identity import Identity

from .helpers import assert_one_line_error, parse_json, run_cli

FAST = ("--steps", "3")


def _pixels(path):
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def _generate(face, *extra, prompt="S* as a chef", out):
    result = run_cli("generate", face, prompt, "--json", "-o", out, *FAST, *extra)
    assert result.exit_code == 0, result.stderr
    return parse_json(result)


def test_generate_writes_pngs_with_parameters_and_sidecars(faces_dir, tmp_path):
    out = tmp_path / "out"
    document = _generate(faces_dir / "obama.jpg", "-n", "2", "--seed", "7", "--negative-prompt", "blurry", out=out)
    assert document["seed"] == 7 and document["seeds"] == [7, 8]
    assert document["model"] == "tiny" and document["device"] == "cpu" and document["dtype"] == "float32"
    paths = [out / "s-as-a-chef-7.png", out / "s-as-a-chef-8.png"]
    assert document["images"] == [str(p) for p in paths]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [p.name for p in paths] + [p.with_suffix(".json").name for p in paths])
    with Image.open(paths[0]) as image:
        assert image.size == (64, 64) and image.format == "PNG"
    info = read_parameters(paths[0])
    assert info["seed"] == 7 and info["steps"] == 3 and info["prompt"] == "S* as a chef"
    assert info["identity_hash"] == document["identity_hash"]
    text = info["parameters"].splitlines()
    assert text[0] == "S* as a chef" and text[1] == "Negative prompt: blurry"
    for fragment in ("Steps: 3", "Sampler: DDIM", "CFG scale: 7.5", "Seed: 7", "Size: 64x64", "Model: tiny",
                     f"Identity: {document['identity_hash']}"):
        assert fragment in text[2]
    sidecar = json.loads(paths[0].with_suffix(".json").read_text())
    assert sidecar["seed"] == 7 and sidecar["image"] == paths[0].name and sidecar["negative_prompt"] == "blurry"
    assert not list(out.glob(".*")), "no temporary files are left"


def test_image_i_uses_seed_plus_i_and_runs_reproduce_bit_for_bit(faces_dir, tmp_path):
    both = _generate(faces_dir / "obama.jpg", "-n", "2", "--seed", "11", out=tmp_path / "a")
    second = _generate(faces_dir / "obama.jpg", "--seed", "12", out=tmp_path / "b")
    again = _generate(faces_dir / "obama.jpg", "-n", "2", "--seed", "11", out=tmp_path / "c")
    assert np.array_equal(_pixels(both["images"][1]), _pixels(second["images"][0]))
    for first, repeat in zip(both["images"], again["images"]):
        assert np.array_equal(_pixels(first), _pixels(repeat))
    assert not np.array_equal(_pixels(both["images"][0]), _pixels(both["images"][1]))


def test_changing_the_face_changes_the_images(faces_dir, tmp_path):
    obama = _generate(faces_dir / "obama.jpg", "--seed", "3", out=tmp_path / "a")
    biden = _generate(faces_dir / "biden.jpg", "--seed", "3", out=tmp_path / "b")
    assert obama["identity_hash"] != biden["identity_hash"]
    difference = np.abs(_pixels(obama["images"][0]).astype(int) - _pixels(biden["images"][0]).astype(int))
    assert difference.mean() > 0.5


def test_identity_file_gives_the_same_images_as_the_photo(faces_dir, tmp_path):
    identity_path = tmp_path / "obama.safetensors"
    result = run_cli("encode", faces_dir / "obama.jpg", "-o", identity_path, "--json")
    assert result.exit_code == 0, result.stderr
    encoded = parse_json(result)
    from_photo = _generate(faces_dir / "obama.jpg", "--seed", "5", out=tmp_path / "a")
    from_file = _generate(identity_path, "--seed", "5", out=tmp_path / "b")
    assert encoded["identity_hash"] == from_photo["identity_hash"] == from_file["identity_hash"]
    assert np.array_equal(_pixels(from_photo["images"][0]), _pixels(from_file["images"][0]))


def test_identity_file_contents(faces_dir, tmp_path):
    path = tmp_path / "me.safetensors"
    result = run_cli("encode", faces_dir / "obama.jpg", faces_dir / "obama2.jpg", "-o", path, "--model", "tiny-xl")
    assert result.exit_code == 0, result.stderr
    assert "wrote" in result.stdout
    identity = Identity.load(path)
    assert identity.word_dims == (32, 32) and identity.num_words == 2
    meta = identity.metadata
    assert meta["base_family"] == "tiny-xl" and meta["encoder_type"] == "m2"
    assert meta["fusion"] == "mean of encoder features" and len(meta["sources"]) == 2
    assert meta["sources"][0]["file"] == "obama.jpg" and len(meta["sources"][0]["sha256"]) == 64
    assert len(meta["sources"][0]["bbox"]) == 4 and meta["faceid_version"]
    assert len(meta["encoder_hash"]) == 64
    # fusing two photos differs from either alone
    single = tmp_path / "one.safetensors"
    run_cli("encode", faces_dir / "obama.jpg", "-o", single, "--model", "tiny-xl")
    assert Identity.load(single).hash != identity.hash


def test_encode_warns_when_the_photos_show_different_people(faces_dir, tmp_path):
    """Photos of two people are still fused (a blend can be meant), with one warning naming the
    least alike pair; photos of one person raise none. Each photo's lowest similarity is recorded."""
    mixed = run_cli("encode", faces_dir / "obama.jpg", faces_dir / "obama2.jpg", faces_dir / "biden.jpg",
                    "-o", tmp_path / "mixed.safetensors", "--backend", "dlib")
    assert mixed.exit_code == 0, mixed.stderr
    warnings = [line for line in mixed.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 1 and "biden.jpg" in warnings[0] and "different people" in warnings[0], mixed.stderr
    sources = Identity.load(tmp_path / "mixed.safetensors").metadata["sources"]
    assert sources[2]["file"] == "biden.jpg" and sources[2]["lowest_similarity"] < 0.905
    assert sources[2]["lowest_similarity"] == min(source["lowest_similarity"] for source in sources)
    same = run_cli("encode", faces_dir / "obama.jpg", faces_dir / "obama2.jpg", faces_dir / "obama3.jpg",
                   "-o", tmp_path / "same.safetensors", "--backend", "dlib")
    assert same.exit_code == 0 and "Warning" not in same.stderr, same.stderr
    assert all(s["lowest_similarity"] >= 0.905 for s in Identity.load(tmp_path / "same.safetensors").metadata["sources"])


def test_a_folder_of_photos_is_one_person(faces_dir, tmp_path, monkeypatch):
    """generate and encode take a folder: its photos fused, the images of `encode` on the same
    photos, every photo recorded as the reference, the folder listed once; a folder without photos
    exits 2, nothing written."""
    import faceid_cli.images

    listed = []
    real_expand = faceid_cli.images.expand_photos
    monkeypatch.setattr(faceid_cli.images, "expand_photos", lambda *a, **k: listed.append(a) or real_expand(*a, **k))
    person = tmp_path / "person"
    (person / "older").mkdir(parents=True)
    (person / "obama.jpg").write_bytes((faces_dir / "obama.jpg").read_bytes())
    (person / "older" / "obama2.jpg").write_bytes((faces_dir / "obama2.jpg").read_bytes())
    (person / "notes.txt").write_text("not a photo")
    identity = tmp_path / "me.safetensors"
    assert run_cli("encode", faces_dir / "obama.jpg", faces_dir / "obama2.jpg", "-o", identity).exit_code == 0
    from_folder = run_cli("encode", person, "-o", tmp_path / "folder.safetensors")
    assert from_folder.exit_code == 0, from_folder.stderr
    assert Identity.load(tmp_path / "folder.safetensors").hash == Identity.load(identity).hash
    listed.clear()
    a = _generate(person, "--seed", "3", out=tmp_path / "a")
    assert len(listed) == 1  # the CLI's listing is the one the identity is encoded from
    b = _generate(identity, "--seed", "3", out=tmp_path / "b")
    assert a["identity_hash"] == b["identity_hash"]
    assert np.array_equal(_pixels(a["images"][0]), _pixels(b["images"][0]))
    assert [Path(r).name for r in read_parameters(a["images"][0])["reference"]] == ["obama.jpg", "obama2.jpg"]
    (tmp_path / "empty").mkdir()
    for args in (["generate", tmp_path / "empty", "S* as a chef", "-o", tmp_path / "c"],
                 ["encode", tmp_path / "empty", "-o", tmp_path / "c" / "e.safetensors"]):
        assert_one_line_error(run_cli(*args), 2, "empty' holds no photo")
    assert not (tmp_path / "c").exists()


def test_tiny_xl_end_to_end(faces_dir, tmp_path):
    document = _generate(faces_dir / "biden.jpg", "--model", "tiny-xl", "--seed", "1", "--scheduler", "euler-a",
                         "--negative-prompt", "ugly", out=tmp_path)
    assert document["family"] == "tiny-xl"
    info = read_parameters(document["images"][0])
    assert "Sampler: Euler a" in info["parameters"] and info["model"] == "tiny-xl"


@pytest.mark.parametrize("method", ["clip-image", "none"])
def test_other_methods(faces_dir, tmp_path, method):
    document = _generate(faces_dir / "obama.jpg", "--method", method, "--seed", "2", out=tmp_path)
    assert document["method"] == method
    assert (document["identity_hash"] is None) == (method == "none")


def test_method_none_equals_the_plain_pipeline_with_a_person(faces_dir, tmp_path):
    import torch

    from faceid_cli.models.tiny import build_tiny_sd

    document = _generate(faces_dir / "obama.jpg", "--method", "none", "--seed", "4", out=tmp_path)
    pipe = build_tiny_sd()
    pipe.set_progress_bar_config(disable=True)
    plain = pipe("a person as a chef", num_inference_steps=3, height=64, width=64,
                 generator=[torch.Generator("cpu").manual_seed(4)]).images[0]
    assert np.array_equal(_pixels(document["images"][0]), np.asarray(plain))


def test_append_identity_injects_the_identity(faces_dir, tmp_path):
    document = _generate(faces_dir / "obama.jpg", "--append-identity", "--seed", "1", prompt="a chef",
                         out=tmp_path / "a")
    assert document["prompt"] == "a chef, photo of S*"
    # the appended words carry the face: the same as writing them, unlike no identity
    written = _generate(faces_dir / "obama.jpg", "--seed", "1", prompt="a chef, photo of S*", out=tmp_path / "b")
    plain = _generate(faces_dir / "obama.jpg", "--method", "none", "--seed", "1", prompt="a chef, photo of S*",
                      out=tmp_path / "c")
    assert np.array_equal(_pixels(document["images"][0]), _pixels(written["images"][0]))
    assert not np.array_equal(_pixels(document["images"][0]), _pixels(plain["images"][0]))


def test_custom_identity_token_injects_the_identity(faces_dir, tmp_path):
    document = _generate(faces_dir / "obama.jpg", "--identity-token", "<me>", "--seed", "1",
                         prompt="<me> as a chef", out=tmp_path / "a")
    assert document["prompt"] == "<me> as a chef"
    default = _generate(faces_dir / "obama.jpg", "--seed", "1", prompt="S* as a chef", out=tmp_path / "b")
    plain = _generate(faces_dir / "obama.jpg", "--method", "none", "--seed", "1", prompt="S* as a chef",
                      out=tmp_path / "c")
    assert np.array_equal(_pixels(document["images"][0]), _pixels(default["images"][0]))
    assert not np.array_equal(_pixels(document["images"][0]), _pixels(plain["images"][0]))


def test_written_files_follow_the_umask(faces_dir, tmp_path):
    import os
    import stat

    previous = os.umask(0o027)
    try:
        document = _generate(faces_dir / "obama.jpg", "--seed", "1", out=tmp_path / "out")
        assert run_cli("encode", faces_dir / "obama.jpg", "-o", tmp_path / "me.safetensors").exit_code == 0
    finally:
        os.umask(previous)
    written = [*map(Path, document["images"]), Path(document["images"][0]).with_suffix(".json"),
               tmp_path / "me.safetensors"]
    for path in written:
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_files_are_never_overwritten(faces_dir, tmp_path):
    first = _generate(faces_dir / "obama.jpg", "--seed", "9", "--name", "chef", out=tmp_path)
    second = _generate(faces_dir / "obama.jpg", "--seed", "9", "--name", "chef", out=tmp_path)
    assert first["images"] == [str(tmp_path / "chef-9.png")]
    assert second["images"] == [str(tmp_path / "chef-9-2.png")]


def test_a_name_taken_by_another_run_in_the_same_moment_is_not_overwritten(faces_dir, tmp_path, monkeypatch):
    import faceid_cli.generate as generate_module

    real_unique_path = generate_module.unique_path
    theirs = tmp_path / "chef-9.png"

    def racing(folder, stem):
        found = real_unique_path(folder, stem)
        if not theirs.exists():  # another run finishes chef-9.png just after this one looked
            theirs.write_bytes(b"the other run's image")
        return found

    monkeypatch.setattr(generate_module, "unique_path", racing)
    mine = _generate(faces_dir / "obama.jpg", "--seed", "9", "--name", "chef", out=tmp_path)
    assert theirs.read_bytes() == b"the other run's image"
    assert mine["images"] == [str(tmp_path / "chef-9-2.png")]
    assert json.loads((tmp_path / "chef-9-2.json").read_text())["image"] == "chef-9-2.png"
    assert not (tmp_path / "chef-9.json").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chef-9-2.json", "chef-9-2.png", "chef-9.png"]


def test_without_hard_links_images_are_still_written(faces_dir, tmp_path, monkeypatch):
    import errno
    import os

    def no_links(source, target, *args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted", str(source), None, str(target))

    monkeypatch.setattr(os, "link", no_links)
    first = _generate(faces_dir / "obama.jpg", "--seed", "9", "--name", "chef", out=tmp_path)
    second = _generate(faces_dir / "obama.jpg", "--seed", "9", "--name", "chef", out=tmp_path)
    assert first["images"] == [str(tmp_path / "chef-9.png")] and second["images"] == [str(tmp_path / "chef-9-2.png")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chef-9-2.json", "chef-9-2.png", "chef-9.json", "chef-9.png"]


def test_human_output_lists_the_files_and_device(faces_dir, tmp_path):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", tmp_path, *FAST, "--seed", "1")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "s-as-a-chef-1.png")
    assert "on cpu (float32)" in result.stderr


# ---- errors -------------------------------------------------------------------------------------

def test_no_face(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (40, 40, 40)).save(blank)
    result = run_cli("generate", blank, "S* as a chef", "-o", tmp_path / "out", *FAST)
    assert_one_line_error(result, 1, "no face found", str(blank))
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_prompt_without_identity_token(faces_dir, tmp_path):
    result = run_cli("generate", faces_dir / "obama.jpg", "a chef", "-o", tmp_path)
    assert_one_line_error(result, 2, "does not mention", "--append-identity")


def test_missing_model_fails_fast_with_what_to_run(faces_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", "sd21-base", "-o", tmp_path)
    assert_one_line_error(result, 1, "sd21-base", "stabilityai/stable-diffusion-2-1-base",
                          "not in the Hugging Face cache", "--allow-download")


def test_real_model_without_encoder_is_refused(faces_dir, tmp_path):
    model = tmp_path / "my-sd"
    model.mkdir()
    (model / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--model", model, "-o", tmp_path)
    assert_one_line_error(result, 1, "no identity encoder", "--encoder")


def test_missing_encoder_file(faces_dir, tmp_path):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--encoder", tmp_path / "nope",
                     "-o", tmp_path)
    assert_one_line_error(result, 1, "nope")


def test_identity_for_another_family_is_refused(faces_dir, tmp_path):
    identity_path = tmp_path / "xl.safetensors"
    assert run_cli("encode", faces_dir / "obama.jpg", "-o", identity_path, "--model", "tiny-xl").exit_code == 0
    result = run_cli("generate", identity_path, "S* as a chef", "--model", "tiny", "-o", tmp_path, *FAST)
    assert_one_line_error(result, 2, "tiny-xl", "re-encode")


@pytest.mark.parametrize("args,fragment", [
    (["--height", "60"], "multiple of 8"),
    (["--scheduler", "magic"], "magic"),
    (["--dtype", "fp64"], "fp64"),
    (["--model", "not a model!"], "unknown model"),
    (["--steps", "0"], "--steps"),
    (["--guidance", "inf"], "--guidance"),
    (["--guidance", "nan"], "--guidance"),
    (["--seed", str(2**63)], "--seed"),
    (["--method", "dreambooth"], "dreambooth"),
])
def test_bad_values_exit_2(faces_dir, tmp_path, args, fragment):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", tmp_path, *args)
    assert_one_line_error(result, 2, fragment)


@pytest.mark.parametrize("command", ["batch", "evaluate", "selfaug"])
def test_every_command_that_loads_a_model_refuses_an_unknown_dtype(faces_dir, tmp_path, command):
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef"}) + "\n")
    args = {"batch": ["batch", jobs], "evaluate": ["evaluate", "--faces", faces_dir / "obama.jpg"],
            "selfaug": ["selfaug", "build", "--names", "world"]}[command]
    result = run_cli(*args, "--dtype", "fp64", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "--dtype", "fp64", "auto, fp32, fp16, bf16")
    assert not (tmp_path / "out").exists()


def test_fake_identity_file(tmp_path):
    fake = tmp_path / "id.safetensors"
    fake.write_bytes(b"not safetensors at all")
    result = run_cli("generate", fake, "S* as a chef", "-o", tmp_path)
    assert_one_line_error(result, 1, "cannot read identity file", str(fake))


def test_encode_requires_safetensors_output(faces_dir, tmp_path):
    result = run_cli("encode", faces_dir / "obama.jpg", "-o", tmp_path / "me.pt")
    assert_one_line_error(result, 2, ".safetensors")


def test_bad_inputs_fail_before_the_diffusion_model_loads(faces_dir, tmp_path, monkeypatch):
    from faceid_cli.models import registry

    def no_loading(*args, **kwargs):
        raise AssertionError("the model must not load for a doomed run")

    monkeypatch.setattr(registry, "load_pipeline", no_loading)
    monkeypatch.setattr("faceid_cli.pipeline_faceid.load_pipeline", no_loading)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (10, 10, 10)).save(blank)
    assert_one_line_error(run_cli("generate", blank, "S* as a chef", "-o", tmp_path), 1, "no face found")
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes((faces_dir / "obama.jpg").read_bytes()[:2000])
    assert_one_line_error(run_cli("generate", truncated, "S* as a chef", "-o", tmp_path), 1, "truncated")
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", tmp_path,
                     "--backend", "insightface", "--insightface-root", tmp_path)
    assert_one_line_error(result, 1, "insightface model pack", "det_10g.onnx")


def test_the_library_prepare_and_generate_equal_the_cli(faces_dir, tmp_path):
    from faceid_cli.generate import GenerationSettings, generate, prepare

    pipeline, identity, prompt = prepare(faces_dir / "obama.jpg", "a chef", append_identity=True)
    assert prompt == "a chef, photo of S*" and identity is not None
    images = generate(pipeline, identity, GenerationSettings(prompt=prompt, seed=3, steps=3), tmp_path / "lib")
    cli = _generate(faces_dir / "obama.jpg", "--append-identity", "--seed", "3", prompt="a chef", out=tmp_path / "cli")
    assert np.array_equal(_pixels(images[0].path), _pixels(cli["images"][0]))
    with pytest.raises(Exception, match="no face|No face"):
        prepare(_blank(tmp_path), "S* as a chef")


def _blank(tmp_path):
    path = tmp_path / "blank.png"
    Image.new("RGB", (128, 128), (200, 200, 200)).save(path)
    return path


@pytest.mark.parametrize("command", [
    ["generate", "{face}", "S* as a chef", "-o", "{out}"],
    ["encode", "{face}", "-o", "{out}/me.safetensors"],
    ["batch", "{jobs}", "-o", "{out}"],
    ["evaluate", "--faces", "{face}", "-o", "{out}"],
    ["selfaug", "build", "--names", "world", "-o", "{out}"],
    ["train", "{jobs}", "-o", "{out}"],
    ["world", "render", "-o", "{out}"],
    ["world", "demo", "-o", "{out}"],
])
def test_an_output_folder_under_a_file_is_refused_before_anything_loads(faces_dir, tmp_path, command):
    blocker = tmp_path / "results"
    blocker.write_text("a file where a folder was meant to go\n")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef"}) + "\n")
    out = blocker / "run-1"
    args = [part.format(face=faces_dir / "obama.jpg", jobs=jobs, out=out) for part in command]
    result = run_cli(*args)
    assert_one_line_error(result, 2, str(out), f"'{blocker}' is a file")
    assert blocker.read_text() == "a file where a folder was meant to go\n"


def test_out_of_memory_is_one_line_that_says_what_to_lower(faces_dir, tmp_path, monkeypatch):
    from diffusers import StableDiffusionPipeline

    def no_memory(self, *args, **kwargs):
        # what PyTorch's CPU allocator raises for a 100000x100000 picture
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 40000000000 bytes. Error code 12")

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", no_memory)
    out = tmp_path / "out"
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", out, *FAST, "-n", "2", "--batch-size", "2",
                     "--height", "4096", "--width", "2048")
    assert_one_line_error(result, 1, "out of memory rendering 2 images of 2048x4096 on cpu",
                          "lower --height/--width or --batch-size")
    assert not out.exists() or not any(out.iterdir())


def test_a_full_disk_is_one_line_naming_the_file_and_leaves_no_partial_image(faces_dir, tmp_path, monkeypatch):
    import errno
    import os

    def disk_full(self, fp, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))

    monkeypatch.setattr(Image.Image, "save", disk_full)
    out = tmp_path / "out"
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", out, *FAST)
    assert_one_line_error(result, 1, os.strerror(errno.ENOSPC), str(out), "free some space")
    assert list(out.iterdir()) == []


def test_an_output_folder_this_user_cannot_write_is_refused(faces_dir, tmp_path, monkeypatch):
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # root may write anywhere, so the refusal a user would meet is simulated
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != locked and real_access(path, mode, **kw))
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", locked / "out")
    assert_one_line_error(result, 2, str(locked / "out"), f"cannot write in '{locked}'", "permission denied")
    assert list(locked.iterdir()) == []
