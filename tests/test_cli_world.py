"""``faceid world``: render data sets, list names, refuse bad values."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from faceid_cli.cli import app
from faceid_cli.world.contexts import caption, Context
from faceid_cli.world.people import SEED_RANGES

runner = CliRunner()


def test_render_writes_images_and_ground_truth(tmp_path):
    out = tmp_path / "set"
    result = runner.invoke(app, ["world", "render", "-o", str(out), "--population", "celebrities", "-n", "2", "-k", "3",
                                 "--context", "hat=red,glasses=none", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["images"] == 6
    records = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    assert len(records) == 6
    for record in records:
        image = Image.open(out / record["file"])
        assert image.size == (64, 64)
        assert record["context"]["hat"] == "red" and record["context"]["glasses"] == "none"
        assert record["population"] == "celebrities" and record["name"]
        assert record["caption"] == caption(Context(**record["context"]), record["name"])
        assert len(record["landmarks"]) == 5 and len(record["bbox"]) == 4
    assert {r["identity"] for r in records} == {0, 1}


def test_render_writes_each_pictures_caption_with_s_star_where_train_reads_it(tmp_path):
    """metadata.jsonl in imagefolder's layout: every picture once, its whole context named, S* for
    the person (a celebrity too: the encoder must not lean on the name); train's reader agrees."""
    from faceid_cli.train.data import captioned_sources

    out = tmp_path / "set"
    result = runner.invoke(app, ["world", "render", "-o", str(out), "--population", "celebrities", "-n", "2", "-k", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["captions"] == str(out / "metadata.jsonl")
    truth = [json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (out / "metadata.jsonl").read_text().splitlines()]
    assert [row["file_name"] for row in rows] == [record["file"] for record in truth]
    for row, record in zip(rows, truth):
        assert row["text"] == caption(Context(**record["context"]), "S*") == record["caption"].replace(record["name"], "S*")
    sources = captioned_sources(sorted((out / "images").iterdir()), "text", "S*", roots=[out])
    assert [s.prompt for s in sources] == [row["text"] for row in rows] and not any(s.skipped for s in sources)


def test_render_is_reproducible_and_held_out_ids_come_from_their_range(tmp_path):
    for name in ("a", "b"):
        assert runner.invoke(app, ["world", "render", "-o", str(tmp_path / name), "-n", "1", "-k", "2"]).exit_code == 0
    a = sorted((tmp_path / "a" / "images").iterdir())
    b = sorted((tmp_path / "b" / "images").iterdir())
    assert [np.asarray(Image.open(p)).tobytes() for p in a] == [np.asarray(Image.open(p)).tobytes() for p in b]
    record = json.loads((tmp_path / "a" / "ground_truth.jsonl").read_text().splitlines()[0])
    assert record["identity"] == SEED_RANGES["held_out"][0] and record["name"] is None


def test_render_pairs_writes_editing_triplets_that_train_reads(tmp_path):
    from faceid_cli.train.data import read_triplets

    out = tmp_path / "set"
    result = runner.invoke(app, ["world", "render", "-o", str(out), "--population", "reconstruction", "-n", "2",
                                 "-k", "3", "--pairs", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["triplets"] == 2 * 3 * 2  # ordered pairs of 3 pictures, per person
    truth = {r["file"]: r for r in (json.loads(line) for line in (out / "ground_truth.jsonl").read_text().splitlines())}
    lines = [json.loads(line) for line in (out / "pairs.jsonl").read_text().splitlines()]
    for line in lines:
        face, target = truth[line["face"]], truth[line["image"]]
        assert line["face"] != line["image"] and face["identity"] == target["identity"] == line["identity"]
        # the prompt describes the target's context, with S* for the person
        assert line["prompt"] == caption(Context(**target["context"]), "S*")
    assert len({(line["face"], line["image"]) for line in lines}) == len(lines)
    sources = read_triplets([str(out / "pairs.jsonl")])
    assert [s.target.name for s in sources] == [Path(line["image"]).name for line in lines]
    assert all(s.face.is_file() and s.target.is_file() and "S*" in s.prompt for s in sources)


def test_render_without_pairs_removes_a_stale_pairs_file(tmp_path):
    out = tmp_path / "set"
    assert runner.invoke(app, ["world", "render", "-o", str(out), "-n", "1", "-k", "2", "--pairs"]).exit_code == 0
    result = runner.invoke(app, ["world", "render", "-o", str(out), "-n", "1", "-k", "2", "--seed", "1"])
    assert result.exit_code == 0 and "removed" in result.stderr
    assert not (out / "pairs.jsonl").exists() and (out / "ground_truth.jsonl").is_file()


def test_render_pairs_needs_two_pictures_of_each_person(tmp_path):
    result = runner.invoke(app, ["world", "render", "-o", str(tmp_path / "x"), "-k", "1", "--pairs"])
    assert result.exit_code == 2 and "-k 1" in result.stderr and "-k 2" in result.stderr
    assert not (tmp_path / "x").exists()


def test_render_refuses_unknown_context_values_with_exit_2(tmp_path):
    result = runner.invoke(app, ["world", "render", "-o", str(tmp_path / "x"), "--context", "hat=purple"])
    assert result.exit_code == 2
    assert "hat=purple" in result.stderr and "red" in result.stderr
    assert not (tmp_path / "x").exists()
    result = runner.invoke(app, ["world", "render", "-o", str(tmp_path / "x"), "--context", "colour=red"])
    assert result.exit_code == 2 and "unknown attribute 'colour'" in result.stderr and "attributes:" in result.stderr
    result = runner.invoke(app, ["world", "render", "-o", str(tmp_path / "x"), "--context", "hat"])
    assert result.exit_code == 2 and "is not ATTRIBUTE=VALUE" in result.stderr


def test_render_refuses_more_people_than_a_population_has(tmp_path):
    result = runner.invoke(app, ["world", "render", "-o", str(tmp_path / "x"), "--population", "celebrities",
                                 "--offset", "9999", "-n", "5"])
    assert result.exit_code == 2 and "celebrities" in result.stderr


def test_names_lists_the_celebrities():
    result = runner.invoke(app, ["world", "names", "--count", "3"])
    assert result.exit_code == 0
    names = result.stdout.splitlines()
    assert len(names) == 3 and all(len(n.split()) == 2 for n in names)


def test_render_offers_every_population_the_world_has():
    from faceid_cli.cli.world import POPULATIONS as OFFERED
    from faceid_cli.world.people import POPULATIONS

    assert OFFERED == POPULATIONS


def test_build_summary_table_adds_the_measurement_and_the_whole_builds_time(capsys):
    from faceid_cli.cli.world import _print_summary

    _print_summary({"components": {"recogniser": {"parameters": 1200}, "world": {"parameters": [10, 20]}},
                    "seconds": {"recogniser": 60.0, "world": 1740.0}, "measure_seconds": 300.0})
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["world", "10", "+", "20", "1740.0"] in lines
    assert ["measurement", "300.0"] in lines
    assert ["total", "2100.0", "(35.0", "min)"] in lines


def test_measuring_a_world_records_how_long_the_measurement_took(tmp_path, monkeypatch):
    import json

    from faceid_cli.world import quality
    from faceid_cli.world.build import SUMMARY_NAME, measure

    (tmp_path / SUMMARY_NAME).write_text(json.dumps({"recipe": {"seed": 1}, "seconds": {"world": 10.0}}))
    monkeypatch.setattr(quality, "measure_world", lambda root, recipe, report, sizes: {"clip": {"top1": 0.5}})
    measure(tmp_path)
    written = json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert written["quality"] == {"clip": {"top1": 0.5}} and written["measure_seconds"] >= 0
    # a measurement on other sample sizes is not the build's: its time is not recorded
    (tmp_path / SUMMARY_NAME).write_text(json.dumps({"recipe": {"seed": 1}}))
    measure(tmp_path, sizes={"prompts": 8})
    assert "measure_seconds" not in json.loads((tmp_path / SUMMARY_NAME).read_text())
