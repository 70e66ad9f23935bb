"""`faceid selfaug` on the miniature world with three names: files, manifest and summary agree, the
keep fraction holds per prompt, shards merge to the unsharded dataset, and a killed run resumes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from .helpers import parse_json, run_cli

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from faceid_cli.world.celebrities import celebrities

    folder = tmp_path_factory.mktemp("selfaug-inputs")
    (folder / "names.txt").write_text("".join(name + "\n" for _, name in celebrities(3)))
    (folder / "edits.txt").write_text("<name> wearing a red hat, green background\n"
                                      "a pencil sketch of <name> wearing sunglasses, blue background\n")
    return folder


def _build(inputs, out, *extra):
    result = run_cli("selfaug", "build", "--names", inputs / "names.txt", "--prompts", inputs / "edits.txt",
                     "--model", "world", "-n", "4", "--steps", "12", "--guidance", "5", "--batch-size", "8",
                     "-o", out, "--json", *extra)
    assert result.exit_code == 0, result.stderr
    return parse_json(result)


def _manifest(out):
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def whole(inputs, tmp_path_factory):
    out = tmp_path_factory.mktemp("selfaug-whole")
    return out, _build(inputs, out)


def test_manifest_files_and_summary_agree_and_the_keep_fraction_holds(whole):
    out, document = whole
    summary = document["summary"]
    assert summary["names"] == 3 and summary["names_with_source"] == 3
    kept = _manifest(out)
    assert len(kept) == summary["kept"] == 2 * 3  # 12 candidates a prompt, 25% kept
    for prompt, row in summary["per_prompt"].items():
        assert row["candidates"] == 12 and row["kept"] == 3 and row["keep_rate"] == 0.25
        assert "S*" in prompt
    for triplet in kept:
        for key in ("face", "image"):
            with Image.open(out / triplet[key]) as image:
                assert image.size == (64, 64)
        assert triplet["rule"] == "rank-sum" and triplet["model"] == "world"
    with Image.open(out / "contact-sheet.png") as sheet:
        assert sheet.width > 128 * 5
    # faceid train reads the manifest as it is
    from faceid_cli.train.data import read_triplets

    triplets = read_triplets([str(out / "manifest.jsonl")])
    assert len(triplets) == 6 and all(t.face.is_file() and t.target.is_file() and "S*" in t.prompt for t in triplets)


def test_shards_merge_to_the_unsharded_dataset(inputs, whole, tmp_path):
    out, _ = whole
    sharded = tmp_path / "sharded"
    for shard in ("0/2", "1/2"):
        part = _build(inputs, sharded, "--shard", shard)
        assert part["summary"] is None
    merged = parse_json(run_cli("selfaug", "merge", sharded, "--json"))
    # the same kept triplets, ranked alike; the scores agree to the rounding that another batch
    # composition moves (oneDNN's CPU kernels on AMX machines differ in the 6th digit by batch)
    scores = ("clip_score", "id_loss", "rank_score")
    exact = [[{k: v for k, v in t.items() if k not in scores} for t in _manifest(folder)] for folder in (sharded, out)]
    assert exact[0] == exact[1]
    for a, b in zip(_manifest(sharded), _manifest(out)):
        assert abs(a["clip_score"] - b["clip_score"]) < 1e-4 and abs(a["id_loss"] - b["id_loss"]) < 1e-4
    images = [t["image"] for t in _manifest(sharded)]
    assert len(images) == len(set(images))
    whole_summary = parse_json(run_cli("selfaug", "merge", out, "--json"))["summary"]["per_prompt"]
    assert merged["summary"]["per_prompt"].keys() == whole_summary.keys()
    for prompt, figures in whole_summary.items():
        assert merged["summary"]["per_prompt"][prompt] == pytest.approx(figures, abs=1e-4), prompt


def test_the_terminal_table_keeps_each_prompts_figures_on_one_line_at_80_columns(whole, tmp_path, monkeypatch):
    out, document = whole
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    monkeypatch.setenv("COLUMNS", "80")
    result = run_cli("selfaug", "merge", copy)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    table = lines[: next(i for i, line in enumerate(lines) if line.startswith("dataset in"))]
    assert max(len(line.rstrip()) for line in table) <= 80  # the folder's line may be longer
    rows = [line for line in lines if "3 / 12" in line]  # kept / candidates, one line a prompt
    assert len(rows) == len(document["summary"]["per_prompt"]) == 2
    for row in rows:  # kept count, no-face count, two score pairs, then the prompt's first words
        figures = row.split()
        assert figures[:3] == ["3", "/", "12"] and figures[3].isdigit() and figures[5] == figures[8] == "/", row
    assert "pencil sketch" in result.stdout and "kept / rejected" in result.stdout


def test_a_killed_run_resumes_without_redoing_or_duplicating(inputs, whole, tmp_path):
    out, _ = whole
    copy = tmp_path / "killed"
    shutil.copytree(out, copy)
    # what a kill leaves: the last scores cut off mid-line, the last edited images never written
    scores = (copy / "scores.jsonl").read_text().splitlines()
    (copy / "scores.jsonl").write_text("\n".join(scores[:10]) + "\n" + scores[10][:20])
    removed = sorted((copy / "edits").rglob("*.png"))[-3:]
    for image in removed:
        image.unlink()
    for name in ("manifest.jsonl", "summary.json"):
        (copy / name).unlink()
    resumed = _build(inputs, copy)
    assert resumed["counts"]["scored_now"] == len(scores) - 10
    again, before = _manifest(copy), _manifest(out)
    # the same triplets; re-rendered images come out of other batch compositions, so their pixels
    # agree to a rounding step, not bit for bit, and their scores to what such a step moves
    assert [(t["image"], t["face"], t["prompt"]) for t in again] == [(t["image"], t["face"], t["prompt"]) for t in before]
    import numpy as np

    for image in removed:
        with Image.open(image) as new, Image.open(out / image.relative_to(copy)) as old:
            assert np.abs(np.asarray(new, dtype=int) - np.asarray(old, dtype=int)).max() <= 1
    drift = [(abs(a["clip_score"] - b["clip_score"]), abs(a["id_loss"] - b["id_loss"])) for a, b in zip(again, before)]
    assert all(c < 1e-3 and i < 1e-3 for c, i in drift), drift
    lines = [json.loads(line)["image"] for line in (copy / "scores.jsonl").read_text().splitlines()[:10]]
    assert len(set(lines)) == 10


def test_the_source_prompt_is_said_in_the_worlds_words_or_as_given(whole, inputs, tmp_path):
    from faceid_cli.selfaug.build import SOURCE_PROMPT, WORLD_SOURCE_PROMPT, read_source_prompt

    out, _ = whole
    # a names file (not 'world'): the paper's prompt, recorded with the run
    assert json.loads((out / "settings.json").read_text())["source_prompt"] == SOURCE_PROMPT
    assert read_source_prompt(None, "world") == WORLD_SOURCE_PROMPT == "a photo of <name>"
    from .helpers import assert_one_line_error

    bad = run_cli("selfaug", "build", "--names", inputs / "names.txt", "--model", "world",
                  "--source-prompt", "a photo of someone", "-o", tmp_path / "bad")
    assert_one_line_error(bad, 2, "--source-prompt", "<name>")
    assert not (tmp_path / "bad").exists()


def test_each_edit_on_the_sheet_carries_its_source_face():
    from faceid_cli.selfaug.build import with_source_inset

    edit = Image.new("RGB", (64, 64), (10, 200, 30))
    source = Image.new("RGB", (64, 64), (250, 0, 0))
    shown = np.asarray(with_source_inset(edit, source))
    side = round(64 / 3)
    assert (shown[1:side - 1, 1:side - 1] == (250, 0, 0)).all()  # the source, shrunk into the corner
    assert (shown[0, :side] == 255).all() and (shown[:side, 0] == 255).all()  # framed in white
    assert (shown[side:, :] == (10, 200, 30)).all() and (shown[:, side:] == (10, 200, 30)).all()
    assert np.asarray(edit).max() == 200  # the edit itself is not drawn on
