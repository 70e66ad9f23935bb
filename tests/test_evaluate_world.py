"""`faceid evaluate` on the miniature world through the CLI: table, CSV, JSON, contact sheet and
plot; ``--method none`` scores far below the real-render ceiling; re-runs give identical numbers."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from .helpers import parse_json, run_cli

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
