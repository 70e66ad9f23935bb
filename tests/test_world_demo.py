"""``faceid world demo`` (what ``make demo`` shows): held-out people through the shipped M²
encoder, then a celebrity by name, each row a reference and its generations, judged in captions."""

from __future__ import annotations

import pytest
from PIL import Image

from .helpers import run_cli

pytestmark = pytest.mark.filterwarnings("ignore")


def test_the_demo_shows_held_out_people_through_the_shipped_encoder(tmp_path):
    from faceid_cli.world import component_path
    from faceid_cli.world.demo import make_demo

    assert component_path("m2-encoder").is_dir()  # the trained world encoder ships
    sheet = make_demo(tmp_path, held_out=(0, 2), people=(1,), per_person=2)
    written = sorted(p.name for p in tmp_path.glob("*.png"))
    assert written == sorted(["world-demo.png", "held-out-0-reference.png", "held-out-0-0.png", "held-out-0-1.png",
                              "held-out-2-reference.png", "held-out-2-0.png", "held-out-2-1.png",
                              "celebrity-1-reference.png", "celebrity-1-0.png", "celebrity-1-1.png"])
    with Image.open(sheet) as picture:
        assert picture.height > 3 * 160 and picture.width >= 3 * 160
    # the two held-out people were encoded apart: their images at each place differ
    for k in (0, 1):
        with Image.open(tmp_path / f"held-out-0-{k}.png") as a, Image.open(tmp_path / f"held-out-2-{k}.png") as b:
            assert a.tobytes() != b.tobytes()


def test_the_demo_command_prints_the_sheet(tmp_path):
    result = run_cli("world", "demo", "-o", tmp_path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip().endswith("world-demo.png") and (tmp_path / "world-demo.png").is_file()


def test_generate_on_the_world_takes_the_shipped_encoder_by_default(tmp_path):
    from faceid_cli.images import save_image
    from faceid_cli.world import component_path
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.render import render_sample

    reference = tmp_path / "ref.png"
    save_image(render_sample(population_seeds("held_out", 1)[0], 3).image, reference)
    pixels = {}
    for label, extra in (("default", ()), ("explicit", ("--encoder", component_path("m2-encoder")))):
        result = run_cli("generate", reference, "a photo of S* wearing a red hat", "--model", "world", "--steps", "4",
                         "--seed", "7", "-o", tmp_path / label, "--json", *extra)
        assert result.exit_code == 0, result.stderr
        with Image.open(next((tmp_path / label).glob("*.png"))) as image:
            pixels[label] = image.tobytes()
    assert pixels["default"] == pixels["explicit"]
    # world-xl ships no encoder: asking for identity there still needs one
    missing = run_cli("generate", reference, "S*", "--model", "world-xl", "--steps", "2", "-o", tmp_path / "xl")
    assert missing.exit_code == 1 and "encoder" in missing.stderr or "world-xl" in missing.stderr
