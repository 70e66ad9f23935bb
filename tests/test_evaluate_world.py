"""`faceid evaluate` on the miniature world through the CLI: table, CSV, JSON, contact sheet and
plot; ``--method none`` scores far below the real-render ceiling; re-runs give identical numbers."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import assert_one_line_error, parse_json, run_cli

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """Two held-out people, two renders each: the first of each is the reference."""
    folder = tmp_path_factory.mktemp("world-people")
    result = run_cli("world", "render", "-o", folder, "--population", "held_out", "-n", "2", "-k", "2",
                     "--context", "hat=none,glasses=none,style=photo", "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (folder / "ground_truth.jsonl").read_text().splitlines()]
    references = folder / "references"
    references.mkdir()
    seconds = {}
    for record in records:
        source = folder / record["file"]
        if record["identity"] not in seconds:
            seconds[record["identity"]] = None
            (references / f"person-{record['identity']}.png").write_bytes(source.read_bytes())
        else:
            seconds[record["identity"]] = source
    return references, seconds


def test_a_world_evaluation_reports_everything_and_none_sits_far_below_the_ceiling(people, tmp_path):
    references, seconds = people
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("S* wearing a red hat, green background\na pencil sketch of S* in a blue shirt\n")
    args = ("--faces", references, "--prompts", prompts, "--model", "world", "--method", "none", "-n", "2",
            "--steps", "12", "--guidance", "5", "--json")
    first = run_cli("evaluate", "-o", tmp_path / "a", *args)
    assert first.exit_code == 0, first.stderr
    document = parse_json(first)
    none = document["results"][0]
    assert none["variant"] == "none" and none["images"] == 8
    # the ceiling: a second render of the same person, scored by the same backend
    from faceid_cli.evaluate.metrics import face_similarity, reference_embedding
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image

    analyzer = load_analyzer("world")
    ceiling = np.mean([face_similarity(analyzer, load_image(second),
                                       reference_embedding(analyzer, load_image(references / f"person-{identity}.png")))
                       for identity, second in seconds.items()])
    assert none["face_similarity"]["mean"] < ceiling - 0.3
    assert 0 <= none["no_face_rate"] <= 0.5
    # the world's ground-truth check: "none" still obeys the context words
    assert none["context"]["mean"] >= 0.75
    rows = list(csv.DictReader((tmp_path / "a" / "results.csv").open()))
    assert rows[0]["variant"] == "none" and float(rows[0]["context"]) == pytest.approx(none["context"]["mean"])
    for name in ("contact-sheet.png", "scatter.png"):
        with Image.open(tmp_path / "a" / name) as picture:
            assert picture.width > 300
    again = parse_json(run_cli("evaluate", "-o", tmp_path / "b", *args))
    assert json.dumps(again["results"][0] | {"encode_seconds": None}) == json.dumps(none | {"encode_seconds": None})


def test_the_context_check_tells_obeyed_from_copied():
    """Renders with known contexts stand in for generations: the reference's own picture copies
    its context, a render in the asked context obeys."""
    from faceid_cli.evaluate.world_check import context_rows
    from faceid_cli.world.contexts import Context
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    person = population_seeds("held_out", 1)[0]
    reference = render_sample(person, 1, context=Context(hat="none", background="gray", shirt="blue")).image
    obeyed = render_sample(person, 2, context=Context(hat="red", background="green", shirt="blue")).image
    asked = "a photo of S* wearing a red hat, green background"
    rows = context_rows([obeyed, reference, reference], [asked, asked, "S* bareheaded, in a blue shirt"],
                        [reference, reference, reference])
    assert rows[0] == {"context": 1.0, "context_copied": 0.0}
    assert rows[1] == {"context": pytest.approx(1 / 3), "context_copied": 1.0}  # only "a photo of" holds
    assert rows[2] == {"context": 1.0, "context_copied": None}  # nothing asked differs from the reference


def test_the_context_check_of_a_person_given_by_several_photos():
    """A prompt conflicts only where it asks what none of the person's photos shows; an image
    copies where it shows what one of them shows."""
    from faceid_cli.evaluate.world_check import context_rows
    from faceid_cli.world.contexts import Context
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    person = population_seeds("held_out", 1)[0]
    photos = [render_sample(person, 1, context=Context(hat="none", background="gray", shirt="blue")).image,
              render_sample(person, 3, context=Context(hat="red", background="purple", shirt="blue")).image]
    obeyed = render_sample(person, 2, context=Context(hat="red", background="green", shirt="blue")).image
    asked = "a photo of S* wearing a red hat, green background"  # the hat is in the second photo
    rows = context_rows([obeyed, photos[0], photos[1]], [asked] * 3, [photos, photos, tuple(photos)])
    assert rows[0] == {"context": 1.0, "context_copied": 0.0}
    assert rows[1] == {"context": pytest.approx(1 / 3), "context_copied": 1.0}  # gray: the first photo's
    assert rows[2] == {"context": pytest.approx(2 / 3), "context_copied": 1.0}  # purple: the second's
    # the same images against the first photo alone: the hat conflicts too
    assert context_rows([obeyed], [asked], [photos[0]])[0] == {"context": 1.0, "context_copied": 0.0}
    assert context_rows([photos[0]], [asked], [photos[0]])[0] == {"context": pytest.approx(1 / 3),
                                                                  "context_copied": 1.0}


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two held-out people as a folder each, with two renders of the person in different contexts."""
    folder = tmp_path_factory.mktemp("world-folders")
    result = run_cli("world", "render", "-o", folder / "renders", "--population", "held_out", "-n", "2", "-k", "2",
                     "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in (folder / "renders" / "ground_truth.jsonl").read_text().splitlines()]
    people = {}
    for record in records:
        person = folder / "people" / f"person-{record['identity']}"
        person.mkdir(parents=True, exist_ok=True)
        photo = person / f"{len(list(person.iterdir()))}.png"
        photo.write_bytes((folder / "renders" / record["file"]).read_bytes())
        people.setdefault(person, []).append(photo)
    assert all(len(photos) == 2 for photos in people.values())
    return people


def test_fuse_folders_generates_each_person_from_all_their_photos(folders, tmp_path):
    """`--fuse-folders`: one person per folder, generated from both photos (the pixels of
    `faceid encode` on both, then generate), scored against the mean of their embeddings; `--images`
    on the same images scores them the same way; without the flag each photo is its own person."""
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("S* wearing a red hat, green background\n")
    args = ["--prompts", prompts, "--model", "world", "-n", "1", "--steps", "8", "--guidance", "5", "--batch-size", "1",
            "--json"]
    for person in folders:
        args += ["--faces", person]
    fused = run_cli("evaluate", "-o", tmp_path / "fused", "--fuse-folders", *args)
    assert fused.exit_code == 0, fused.stderr
    document = parse_json(fused)
    assert document["results"][0]["images"] == 2
    scores = [json.loads(line) for line in (tmp_path / "fused" / "scores.jsonl").read_text().splitlines()]
    assert sorted(row["face"] for row in scores) == sorted(str(person) for person in folders)

    from faceid_cli.evaluate.metrics import face_similarity, reference_embedding
    from faceid_cli.faces import load_analyzer
    from faceid_cli.images import load_image

    analyzer = load_analyzer("world")
    for row in scores:
        photos = folders[next(p for p in folders if str(p) == row["face"])]
        image_path = tmp_path / "fused" / "images" / row["file"]
        sidecar = json.loads(image_path.with_suffix(".json").read_text())
        assert sorted(sidecar["reference"]) == sorted(str(p.resolve()) for p in photos)
        units = [e / np.linalg.norm(e) for e in (reference_embedding(analyzer, load_image(p)) for p in photos)]
        centre = np.mean(units, axis=0)
        expected = face_similarity(analyzer, load_image(image_path), centre / np.linalg.norm(centre))
        assert row["face_similarity"] == pytest.approx(expected, abs=1e-5)
        # the identity is both photos fused: the image is generate's from `faceid encode` on both
        identity = tmp_path / f"{Path(row['face']).name}.safetensors"
        assert run_cli("encode", *photos, "-o", identity, "--model", "world").exit_code == 0
        again = run_cli("generate", identity, row["prompt"], "--model", "world", "--seed", row["seed"], "--steps", "8",
                        "--guidance", "5", "-o", tmp_path / "again" / identity.stem, "--json")
        assert again.exit_code == 0, again.stderr
        made = parse_json(again)["images"][0]
        assert np.array_equal(np.asarray(load_image(made)), np.asarray(load_image(image_path)))

    rescored = run_cli("evaluate", "--images", tmp_path / "fused" / "images", "-o", tmp_path / "rescored", "--json")
    assert rescored.exit_code == 0, rescored.stderr
    assert parse_json(rescored)["results"][0]["face_similarity"]["mean"] == pytest.approx(
        document["results"][0]["face_similarity"]["mean"], abs=1e-5)

    apart = run_cli("evaluate", "-o", tmp_path / "apart", *args)
    assert apart.exit_code == 0, apart.stderr
    assert parse_json(apart)["results"][0]["images"] == 4  # a person per photo


def test_fuse_folders_refuses_a_folder_without_photos(folders, tmp_path):
    empty = tmp_path / "nobody"
    empty.mkdir()
    (empty / "notes.txt").write_text("no photo here")
    result = run_cli("evaluate", "--faces", next(iter(folders)), "--faces", empty, "--fuse-folders", "--model", "world",
                     "--prompts", "world", "-o", tmp_path / "out")
    assert_one_line_error(result, 2, "nobody", "holds no photo")
    assert not (tmp_path / "out").exists()
