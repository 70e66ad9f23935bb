"""``--identity-start``: the first share of the steps is drawn from the prompt alone, then the
identity takes over (PhotoMaker's "style strength"), through generate, batch and evaluate."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceid_cli.generate import read_parameters

from .helpers import assert_one_line_error, parse_json, run_cli
from .test_cli_evaluate import tiny_clip  # noqa: F401  (the fixture)

FAST = ("--steps", "4", "--seed", "3")


def _image(face, *extra, out: Path, prompt="S* as a chef") -> np.ndarray:
    result = run_cli("generate", face, prompt, "--json", "-o", out, *FAST, *extra)
    assert result.exit_code == 0, result.stderr
    [path] = parse_json(result)["images"]
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


@pytest.mark.parametrize("model,scheduler", [("tiny", "ddim"), ("tiny-xl", "ddim"), ("tiny", "heun")])
def test_start_0_is_the_identity_throughout_and_1_is_no_identity_at_all(faces_dir, tmp_path, model, scheduler):
    face = faces_dir / "obama.jpg"
    common = ("--model", model, "--scheduler", scheduler)
    default = _image(face, *common, out=tmp_path / "default")
    start_0 = _image(face, *common, "--identity-start", "0", out=tmp_path / "0")
    halfway = _image(face, *common, "--identity-start", "0.5", out=tmp_path / "0.5")
    start_1 = _image(face, *common, "--identity-start", "1", out=tmp_path / "1")
    none = _image(face, *common, "--method", "none", out=tmp_path / "none")
    assert np.array_equal(start_0, default)
    # every step drawn from the prompt with S* read as "a person": exactly --method none's image
    assert np.array_equal(start_1, none)
    # halfway is neither: the identity entered part way through
    assert not np.array_equal(halfway, default) and not np.array_equal(halfway, none)
    assert np.abs(halfway - none).mean() < np.abs(default - none).mean()


def test_without_guidance_the_switch_replaces_the_whole_text_condition(faces_dir, tmp_path):
    face = faces_dir / "obama.jpg"
    start_1 = _image(face, "--guidance", "1", "--identity-start", "1", out=tmp_path / "1")
    none = _image(face, "--guidance", "1", "--method", "none", out=tmp_path / "none")
    halfway = _image(face, "--guidance", "1", "--identity-start", "0.5", out=tmp_path / "0.5")
    assert np.array_equal(start_1, none) and not np.array_equal(halfway, none)


def test_the_start_is_recorded_with_the_image(faces_dir, tmp_path):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--json", "-o", tmp_path, *FAST,
                     "--identity-start", "0.25")
    document = parse_json(result)
    [path] = document["images"]
    assert document["identity_start"] == 0.25
    info = read_parameters(path)
    assert info["identity_start"] == 0.25 and "Identity start: 0.25" in info["parameters"]
    assert json.loads(Path(path).with_suffix(".json").read_text())["identity_start"] == 0.25
    plain = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--json", "-o", tmp_path / "plain", *FAST)
    assert "Identity start" not in read_parameters(parse_json(plain)["images"][0])["parameters"]


@pytest.mark.parametrize("value", ["-0.1", "1.5", "half", "nan", "inf"])
def test_a_start_outside_0_to_1_is_refused(faces_dir, tmp_path, value):
    result = run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "-o", tmp_path / "out",
                     "--identity-start", value)
    assert_one_line_error(result, 2, "--identity-start")
    assert not (tmp_path / "out").exists()


def test_a_batch_job_takes_its_own_start_and_matches_generate(faces_dir, tmp_path):
    face = str(faces_dir / "obama.jpg")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(job) for job in [
        {"face": face, "prompt": "S* as a chef", "name": "late", "seed": 3, "identity_start": 0.5},
        {"face": face, "prompt": "S* as a chef", "name": "plain", "seed": 3},
    ]) + "\n")
    result = run_cli("batch", jobs, "-o", tmp_path / "batch", "--steps", "4", "--batch-size", "2")
    assert result.exit_code == 0, result.stderr
    with Image.open(tmp_path / "batch" / "late-3.png") as late, Image.open(tmp_path / "batch" / "plain-3.png") as plain:
        late, plain = np.asarray(late).astype(int), np.asarray(plain).astype(int)
    assert np.array_equal(late, _image(face, "--identity-start", "0.5", out=tmp_path / "g-late"))
    assert np.array_equal(plain, _image(face, out=tmp_path / "g-plain"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"face": face, "prompt": "S* as a chef", "identity_start": 2}) + "\n")
    failed = run_cli("batch", bad, "-o", tmp_path / "bad", "--steps", "4", "--quiet")
    assert_one_line_error(failed, 1, "'identity_start' must be between 0.0 and 1.0, got 2.0")


def test_evaluate_makes_a_column_per_start(faces_dir, tmp_path, tiny_clip):  # noqa: F811
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("S* as a chef\n")
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", prompts, "-o", out,
                     "--method", "m2", "--method", "none", "--identity-start", "0", "--identity-start", "1",
                     "--clip", tiny_clip, "--backend", "dlib", "--steps", "2", "-n", "2", "--json")
    assert result.exit_code == 0, result.stderr
    table = {row["variant"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert set(table) == {"m2@start0", "m2@start1", "none"}
    # the identity never entered: the same images as no identity, seed for seed
    def pixels(variant):
        folder = out / "images" / variant
        return [np.asarray(Image.open(path)).astype(int) for path in sorted(folder.rglob("*.png"))]

    assert len(pixels("none")) == 2
    assert all(np.array_equal(a, b) for a, b in zip(pixels("m2-start1"), pixels("none")))
    assert not any(np.array_equal(a, b) for a, b in zip(pixels("m2-start0"), pixels("none")))
    assert table["m2@start1"]["text_alignment"] == table["none"]["text_alignment"]
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert {s["identity_start"] for s in scores if s["variant"].startswith("m2")} == {0.0, 1.0}
    # scoring the images again from their files tells the columns apart by what each image records
    rescored = run_cli("evaluate", "--images", out / "images", "--clip", tiny_clip, "--backend", "dlib",
                       "-o", tmp_path / "again", "--json")
    assert rescored.exit_code == 0, rescored.stderr
    again = {row["variant"]: row for row in csv.DictReader((tmp_path / "again" / "results.csv").open())}
    assert set(again) == {"m2@start0", "m2@start1", "none"}
    assert again["m2@start0"]["text_alignment"] == table["m2@start0"]["text_alignment"]


@pytest.mark.parametrize("setting,value,fragment", [
    ("guidance", float("nan"), "--guidance nan must be a finite number"),
    ("guidance", float("inf"), "--guidance inf must be a finite number"),
    ("identity_start", float("nan"), "--identity-start nan must be between 0 and 1"),
    ("identity_start", -0.5, "--identity-start -0.5 must be between 0 and 1"),
])
def test_the_library_refuses_what_the_cli_refuses(setting, value, fragment):
    from faceid_cli.errors import InvalidArgumentError
    from faceid_cli.pipeline_faceid import FaceIDPipeline

    pipeline = FaceIDPipeline.from_model("tiny")
    settings = {"steps": 2, "guidance": 7.5, "identity_start": 0.0, setting: value}
    with pytest.raises(InvalidArgumentError, match=fragment.replace("-", r"\-").replace(".", r"\.")):
        pipeline(None, "a person", seeds=[0], **settings)
