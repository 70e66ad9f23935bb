"""`faceid evaluate` end to end on the tiny model with real photos, dlib and a tiny random CLIP."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import as_hub_cache, assert_one_line_error, parse_json, run_cli

ARGS = ("--steps", "2", "-n", "2", "--model", "tiny", "--backend", "dlib")


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    """A random CLIPModel saved the way the hub does, read back through the scorer's loader."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    from faceid_cli.models.tiny import build_tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-clip")
    torch.manual_seed(0)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "vocab_size": 1000, "max_position_embeddings": 77},
                        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 32, "patch_size": 8},
                        projection_dim=16)
    tokenizer = build_tiny_tokenizer()
    config.text_config.vocab_size = len(tokenizer)
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture
def prompts_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("# two prompts\nS* as a chef\n\nS* wearing a hat\n")
    return path


def _faces(faces_dir, tmp_path):
    folder = tmp_path / "refs"
    folder.mkdir()
    for name in ("obama.jpg", "biden.jpg"):
        (folder / name).write_bytes((faces_dir / name).read_bytes())
    return folder


def test_evaluate_compares_methods_with_the_same_seeds_and_writes_every_report(tmp_path, faces_dir, tiny_clip,
                                                                               prompts_file):
    out = tmp_path / "eval"
    result = run_cli("evaluate", "--faces", _faces(faces_dir, tmp_path), "--prompts", prompts_file, "-o", out,
                     "--method", "m2", "--method", "none", "--clip", tiny_clip, "--json", *ARGS)
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    assert document["generated"] == 2 * 2 * 2 * 2 and document["scored"]
    table = {row["variant"]: row for row in csv.DictReader((out / "results.csv").open())}
    assert set(table) == {"m2", "none"} and all(int(row["images"]) == 8 for row in table.values())
    scores = [json.loads(line) for line in (out / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 16 and all(-1 <= s["text_alignment"] <= 1 for s in scores)
    by = {(s["variant"], s["face"], s["prompt"], s["seed"]) for s in scores}
    assert {(f, p, seed) for v, f, p, seed in by if v == "m2"} == {(f, p, seed) for v, f, p, seed in by if v == "none"}
    assert all(s["encode_seconds"] > 0 for s in scores if s["variant"] == "m2")
    assert all(s["encode_seconds"] is None for s in scores if s["variant"] == "none")
    summaries = json.loads((out / "results.json").read_text())
    assert len(summaries["variant_prompt"]) == 4 and len(summaries["variant_face"]) == 4
    for name in ("contact-sheet.png", "scatter.png"):
        with Image.open(out / name) as picture:
            assert picture.width > 300


def test_evaluation_reruns_give_identical_numbers_and_resume_generates_nothing(tmp_path, faces_dir, tiny_clip,
                                                                               prompts_file):
    faces = _faces(faces_dir, tmp_path)
    common = ("--faces", faces, "--prompts", prompts_file, "--clip", tiny_clip, "--json", *ARGS)
    first = parse_json(run_cli("evaluate", "-o", tmp_path / "a", *common))
    again = parse_json(run_cli("evaluate", "-o", tmp_path / "a", *common))
    fresh = parse_json(run_cli("evaluate", "-o", tmp_path / "b", *common))
    assert again["generated"] == 0, "a re-run finds every image and generates nothing"
    assert _figures(first) == _figures(again) == _figures(fresh)
    assert again["results"][0]["encode_seconds"] == first["results"][0]["encode_seconds"] > 0  # kept from the run


def _figures(document) -> str:
    """Every number but the encode times (wall-clock), NaN-safe."""
    return json.dumps([{k: v for k, v in row.items() if k != "encode_seconds"} for row in document["results"]])


def test_shards_generate_then_the_plain_run_scores_them_all(tmp_path, faces_dir, tiny_clip, prompts_file):
    faces = _faces(faces_dir, tmp_path)
    common = ("--faces", faces, "--prompts", prompts_file, "--clip", tiny_clip, "-o", tmp_path / "s", "--json", *ARGS)
    for shard in ("0/2", "1/2"):
        part = parse_json(run_cli("evaluate", "--shard", shard, *common))
        assert not part["scored"] and part["generated"] > 0
    merged = parse_json(run_cli("evaluate", *common))
    whole = parse_json(run_cli("evaluate", "--faces", faces, "--prompts", prompts_file, "--clip", tiny_clip,
                               "-o", tmp_path / "w", "--json", *ARGS))
    assert merged["generated"] == 0 and _figures(merged) == _figures(whole)
    assert merged["results"][0]["encode_seconds"] > 0


def test_bad_arguments(tmp_path, faces_dir):
    assert_one_line_error(run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", "nonsense",
                                  "-o", tmp_path), 2, "nonsense")
    assert_one_line_error(run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--method", "magic",
                                  "-o", tmp_path), 2, "magic")
    assert_one_line_error(run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--method", "faceclip",
                                  "--negative-branch", "black", "-o", tmp_path), 2, "black")


def test_prompt_sets_ship():
    from faceid_cli.evaluate.prompts import load_prompts

    assert len(load_prompts("dreamidentity")) == 9 and "S* as a chef, looking at the camera" in load_prompts(
        "dreamidentity")
    assert len(load_prompts("wide")) == 24 and all("S*" in p for p in load_prompts("wide"))
    world = load_prompts("world")
    assert len(world) == 16 and len(set(world)) == 16 and all("S*" in p for p in world)
    assert np.all([p == q for p, q in zip(world, load_prompts("world"))])


def test_images_of_a_batch_run_reproduce_the_generating_evaluation(tmp_path, faces_dir, tiny_clip, prompts_file):
    faces = _faces(faces_dir, tmp_path)
    generated = parse_json(run_cli("evaluate", "--faces", faces, "--prompts", prompts_file, "--clip", tiny_clip,
                                   "-o", tmp_path / "e", "--method", "m2", "--method", "none", "--json", *ARGS))
    rescored = run_cli("evaluate", "--images", tmp_path / "e" / "images", "--clip", tiny_clip, "--backend", "dlib",
                       "-o", tmp_path / "r", "--json")
    assert rescored.exit_code == 0, rescored.stderr
    assert _figures(parse_json(rescored)) == _figures(generated)
    # a batch run's folder scores the same way
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(json.dumps({"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef", "num_images": 2,
                                "steps": 2, "seed": 3}) + "\n")
    assert run_cli("batch", jobs, "-o", tmp_path / "batch").exit_code == 0
    from_batch = parse_json(run_cli("evaluate", "--images", tmp_path / "batch", "--clip", tiny_clip, "--backend",
                                    "dlib", "-o", tmp_path / "rb", "--json"))
    assert from_batch["results"][0]["images"] == 2


def test_faces_or_images_not_both(tmp_path, faces_dir):
    assert_one_line_error(run_cli("evaluate", "-o", tmp_path), 2, "--faces")


def test_images_folder_with_only_broken_files_says_so(tmp_path):
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "empty.png").write_bytes(b"")
    (folder / "fake.png").write_text("not a picture")
    assert_one_line_error(run_cli("evaluate", "--images", folder, "-o", tmp_path / "out"), 2, "no image made by faceid")


def test_a_missing_encoder_fails_before_anything_is_generated(tmp_path, faces_dir):
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", "world", "--method", "m2",
                     "--encoder", tmp_path / "nope", "-o", tmp_path / "out")
    assert_one_line_error(result, 1, "nope", "--encoder")
    assert not (tmp_path / "out").exists()


def test_identity_photos_score_each_image_against_further_photos_of_its_person(tmp_path, faces_dir, tiny_clip):
    """--identity-photos: the cosine of each image's face with the mean unit embedding of the
    person's other photos, beside the face similarity to the reference (real photos stand in for
    generated images, so every one has a face)."""
    from faceid_cli.evaluate.run import identity_targets, score_records
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image

    images = tmp_path / "images"
    images.mkdir()
    for name in ("obama2.jpg", "biden2.jpg"):
        (images / name).write_bytes((faces_dir / name).read_bytes())
    others = tmp_path / "others"
    for person, photos in (("obama", ("obama3.jpg", "obama_small.jpg")), ("biden", ("two_people.jpg",))):
        (others / person).mkdir(parents=True)
        for photo in photos:
            (others / person / photo).write_bytes((faces_dir / photo).read_bytes())
    analyzer = load_analyzer("dlib")
    references = [str(faces_dir / "obama.jpg"), str(faces_dir / "biden.jpg")]
    meaning = {f"j{i}": {"variant": "m2", "method": "m2", "encoder": None, "face": ref, "prompt": "S* as a chef"}
               for i, ref in enumerate(references)}
    records = [{"job": "j0", "seed": 0, "files": ["obama2.jpg"]}, {"job": "j1", "seed": 0, "files": ["biden2.jpg"]}]
    targets = identity_targets(others, {ref: [ref] for ref in references}, analyzer)
    rows = score_records(images, records, meaning, backend="dlib", options=None, clip=str(tiny_clip), neutral="a person",
                         encode_seconds={}, note=lambda m: None, analyzer=analyzer, identity_targets=targets)

    def unit(path):
        embedding = analyzer.identity(load_image(path)).embedding
        return embedding / np.linalg.norm(embedding)

    for row, generated, photos in ((rows[0], "obama2.jpg", ("obama3.jpg", "obama_small.jpg")),
                                   (rows[1], "biden2.jpg", ("two_people.jpg",))):
        centre = np.mean([unit(faces_dir / p) for p in photos], axis=0)
        expected = float(unit(faces_dir / generated) @ (centre / np.linalg.norm(centre)))
        assert row["identity_similarity"] == pytest.approx(expected, abs=1e-6)
        assert row["identity_similarity"] > 0.9 and row["identity_similarity"] != row["face_similarity"]
    # Obama's image against Biden's further photos: the column follows the reference's person
    assert float(unit(faces_dir / "obama2.jpg") @ targets[references[1]]) < 0.9


def test_identity_photos_need_a_folder_for_every_person_before_anything_is_generated(tmp_path, faces_dir, tiny_clip,
                                                                                    prompts_file, monkeypatch):
    others = tmp_path / "others" / "obama"
    others.mkdir(parents=True)
    (others / "obama3.jpg").write_bytes((faces_dir / "obama3.jpg").read_bytes())
    common = ("--faces", _faces(faces_dir, tmp_path), "--prompts", prompts_file, "--clip", tiny_clip, *ARGS)
    result = run_cli("evaluate", *common, "--identity-photos", tmp_path / "others", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "--identity-photos", "1 of the people", str(tmp_path / "others" / "biden"))
    assert not (tmp_path / "out").exists()
    (tmp_path / "others" / "biden").mkdir()
    (tmp_path / "others" / "biden" / "biden2.jpg").write_bytes((faces_dir / "biden2.jpg").read_bytes())
    result = run_cli("evaluate", *common, "--identity-photos", tmp_path / "others", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    table = next(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert "identity_similarity" in table
    scores = [json.loads(line) for line in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert len(scores) == 8 and all("identity_similarity" in s for s in scores)
    # scoring the images again finds each person's folder from what the images record
    again = run_cli("evaluate", "--images", tmp_path / "out" / "images", "--clip", tiny_clip, "--backend", "dlib",
                    "--identity-photos", tmp_path / "others", "-o", tmp_path / "again", "--json")
    assert again.exit_code == 0, again.stderr
    rescored = [json.loads(line) for line in (tmp_path / "again" / "scores.jsonl").read_text().splitlines()]
    key = lambda s: (Path(s["face"]).name, s["prompt"], s["seed"])  # noqa: E731
    assert {key(s): s["identity_similarity"] for s in rescored} == {key(s): s["identity_similarity"] for s in scores}
    # on an 80-column terminal the table gives up the intervals, not the figures: no cell is cut
    human = run_cli("evaluate", "--images", tmp_path / "out" / "images", "--clip", tiny_clip, "--backend", "dlib",
                    "--identity-photos", tmp_path / "others", "-o", tmp_path / "human")
    assert human.exit_code == 0, human.stderr
    table = {row["variant"]: row for row in csv.DictReader((tmp_path / "human" / "results.csv").open())}
    assert "…" not in human.stdout, human.stdout
    row = next(line.split() for line in human.stdout.splitlines() if line.split()[:1] == ["m2"])
    assert row[1] == f"{float(table['m2']['text_alignment']):.3f}" and row[2].startswith("[")
    monkeypatch.setenv("COLUMNS", "60")  # too narrow for the intervals: the means alone, whole
    narrow = run_cli("evaluate", "--images", tmp_path / "out" / "images", "--clip", tiny_clip, "--backend", "dlib",
                     "--identity-photos", tmp_path / "others", "-o", tmp_path / "narrow")
    assert narrow.exit_code == 0 and "…" not in narrow.stdout and "intervals are in results.csv" in narrow.stdout
    row = next(line.split() for line in narrow.stdout.splitlines() if line.split()[:1] == ["m2"])
    assert row[1] == f"{float(table['m2']['text_alignment']):.3f}" and not row[2].startswith("[")


def test_when_every_job_fails_the_error_says_why(tmp_path, faces_dir, tiny_clip, prompts_file):
    """A folder that holds no encoder passes the up-front check (it exists) and fails each job:
    the one line names the count and the first job's reason, not "see the errors above"."""
    (tmp_path / "not-an-encoder").mkdir()
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", prompts_file, "--clip", tiny_clip,
                     "--encoder", tmp_path / "not-an-encoder", "-o", tmp_path / "out", *ARGS)
    line = assert_one_line_error(result, 1, "no image was generated", "jobs failed, the first with",
                                 "not-an-encoder", "config.json and model.safetensors")
    assert "above" not in line


@pytest.mark.parametrize("broken,fragment", [
    ("empty.jpg", "empty.jpg"),
    ("blank.png", "no face found in"),
])
def test_a_reference_that_cannot_be_scored_fails_before_anything_is_generated(tmp_path, faces_dir, tiny_clip,
                                                                               broken, fragment):
    refs = _faces(faces_dir, tmp_path)
    if broken == "empty.jpg":
        (refs / broken).write_bytes(b"")
    else:
        Image.new("RGB", (256, 256), (120, 130, 140)).save(refs / broken)
    # method none never reads the face to generate: it used to fail only when scoring began
    result = run_cli("evaluate", "--faces", refs, "--method", "none", "--clip", tiny_clip, "-o", tmp_path / "out",
                     *ARGS)
    assert_one_line_error(result, 1, fragment, str(refs / broken))
    assert not (tmp_path / "out").exists()


def test_max_pixels_governs_every_read_of_a_reference(tmp_path, faces_dir, tiny_clip, prompts_file, monkeypatch):
    monkeypatch.setenv("FACEID_MAX_PIXELS", "100000")  # below the photo (0.5 MP), above what tiny draws
    common = ("--faces", faces_dir / "obama.jpg", "--prompts", prompts_file, "--clip", tiny_clip, *ARGS)
    refused = run_cli("evaluate", *common, "-o", tmp_path / "refused")
    assert_one_line_error(refused, 1, "obama.jpg", "over the limit", "--max-pixels")
    assert not (tmp_path / "refused").exists()
    # the option the hint names lifts the limit for the check, the encoding and the contact sheet
    result = run_cli("evaluate", *common, "--max-pixels", "50000000", "-o", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.stderr
    assert parse_json(result)["results"][0]["images"] == 4 and (tmp_path / "out" / "contact-sheet.png").is_file()
    rescored = run_cli("evaluate", "--images", tmp_path / "out" / "images", "--clip", tiny_clip, "--backend", "dlib",
                       "--max-pixels", "50000000", "-o", tmp_path / "rescored", "--json")
    assert rescored.exit_code == 0, rescored.stderr


def test_a_prompt_without_the_person_is_refused(tmp_path, faces_dir):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("S* as a chef\na bowl of fruit\n")
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", prompts, "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "needs S*", "'a bowl of fruit'", str(prompts))
    assert not (tmp_path / "out").exists()


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def test_a_base_model_missing_from_the_cache_fails_before_anything_is_generated(tmp_path, faces_dir,
                                                                                 empty_hub_cache):
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--model", "sd21-base", "-o", tmp_path / "out")
    assert_one_line_error(result, 1, "sd21-base", "not in the Hugging Face cache", "--allow-download")
    assert not (tmp_path / "out").exists()


def test_the_default_clip_missing_from_the_cache_fails_before_anything_is_generated(tmp_path, faces_dir,
                                                                                   empty_hub_cache):
    # it used to generate every image first and fail when scoring began
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "-o", tmp_path / "out", *ARGS)
    assert_one_line_error(result, 1, "'openai/clip-vit-large-patch14'", "hf download", "--allow-download")
    assert not (tmp_path / "out").exists()


def test_a_clip_in_the_hub_cache_is_found_by_repo_id_offline(tmp_path, faces_dir, tiny_clip, prompts_file,
                                                            empty_hub_cache):
    as_hub_cache(empty_hub_cache, "someone/tiny-clip", tiny_clip)
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", prompts_file, "--clip",
                     "someone/tiny-clip", "-o", tmp_path / "out", "--json", *ARGS)
    assert result.exit_code == 0, result.stderr
    assert parse_json(result)["results"][0]["images"] == 4  # 1 face x 2 prompts x 2 images, all scored


def test_evaluate_compares_m2_and_faceclip_on_tiny_xl(tmp_path, faces_dir, tiny_clip, prompts_file):
    result = run_cli("evaluate", "--faces", faces_dir / "obama.jpg", "--prompts", prompts_file, "-o", tmp_path / "e",
                     "--method", "m2", "--method", "faceclip", "--clip", tiny_clip, "--json", "--steps", "2", "-n",
                     "1", "--model", "tiny-xl", "--backend", "dlib", "--negative-branch", "release",
                     "--negative-branch", "text")
    assert result.exit_code == 0, result.stderr
    document = parse_json(result)
    variants = {"m2", "faceclip@release-negative", "faceclip@text-negative"}  # the branches: faceclip's columns
    assert {row["variant"] for row in document["results"]} == variants
    assert all(row["images"] == 2 for row in document["results"])  # one per prompt, same seeds
    # the images record their branch: scored again from the folder, the same columns and numbers
    again = run_cli("evaluate", "--images", tmp_path / "e" / "images", "-o", tmp_path / "again", "--clip", tiny_clip,
                    "--json", "--backend", "dlib")
    assert again.exit_code == 0, again.stderr
    rescored = {row["variant"]: row for row in parse_json(again)["results"]}
    assert set(rescored) == variants
    for row in document["results"]:
        assert rescored[row["variant"]]["text_alignment"] == row["text_alignment"]
