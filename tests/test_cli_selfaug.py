"""`faceid selfaug build` refuses, before it generates anything, what would fail hours later; and a
build whose generation failed says so, exits 1, and a re-run retries what failed."""

from __future__ import annotations

import json

import pytest

from .helpers import assert_one_line_error, run_cli


@pytest.fixture
def names_file(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("Ada Lovelace\n")
    return path


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def test_a_base_model_missing_from_the_cache_fails_before_anything_is_written(tmp_path, names_file,
                                                                               empty_hub_cache):
    out = tmp_path / "dataset"
    result = run_cli("selfaug", "build", "--names", names_file, "--model", "sd21-base", "-o", out)
    assert_one_line_error(result, 1, "sd21-base", "not in the Hugging Face cache", "--allow-download")
    assert not out.exists()


def test_a_clip_scorer_missing_from_the_cache_fails_before_generation(tmp_path, names_file, empty_hub_cache):
    out = tmp_path / "dataset"
    result = run_cli("selfaug", "build", "--names", names_file, "--model", "tiny", "--clip",
                     "openai/clip-vit-large-patch14", "-o", out)
    assert_one_line_error(result, 1, "'openai/clip-vit-large-patch14'", "hf download", "--allow-download")
    assert not out.exists()


@pytest.mark.parametrize("clip,fragment", [
    ("no-such-folder/", "neither a folder nor a Hugging Face repo id"),
    ("{tmp}", "has no config.json"),
])
def test_a_clip_value_that_is_no_scorer_is_named(tmp_path, names_file, clip, fragment):
    clip = clip.format(tmp=tmp_path)
    result = run_cli("selfaug", "build", "--names", names_file, "--model", "tiny", "--clip", clip,
                     "-o", tmp_path / "dataset")
    assert_one_line_error(result, 1, clip, fragment)
    assert not (tmp_path / "dataset").exists()


def test_failed_generation_exits_1_and_a_rerun_retries_it(tmp_path, names_file, monkeypatch):
    from faceid_cli.errors import FaceIDError
    from faceid_cli.pipeline_faceid import FaceIDPipeline

    def out_of_memory(*args, **kwargs):
        raise FaceIDError("CUDA out of memory while loading", "use a smaller --batch-size")

    out = tmp_path / "dataset"
    args = ("selfaug", "build", "--names", names_file, "--model", "tiny", "--clip", "world", "--sources", "1",
            "-n", "1", "--steps", "1", "--backend", "dlib", "-o", out)
    with monkeypatch.context() as patch:
        patch.setattr(FaceIDPipeline, "from_model", out_of_memory)
        result = run_cli(*args)
    assert_one_line_error(result, 1, "1 generation job failed", "CUDA out of memory", "run the same command again")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source_rejections"] == {"not generated": 1}

    result = run_cli(*args)  # the model loads now: the source is generated (the tiny model draws no face)
    assert result.exit_code == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["source_rejections"] == {"no face found": 1}
    assert len(list((out / "sources").glob("*.png"))) == 1


@pytest.mark.parametrize("names,prompts,extra,fragments", [
    ("", None, (), ("names file", "has no name")),
    ("Ada\nAda\n", None, (), ("repeats a name",)),
    (None, None, (), ("names file", "not found")),
    ("Ada\n", "<name> as a chef\na hat\n", (), ("needs <name>", "'a hat'")),
    ("Ada\n", "# only a comment\n\n", (), ("has no prompt",)),
    ("Ada\n", None, ("--source-prompt", "a face"), ("--source-prompt", "has no <name>")),
    ("Ada\n", None, ("--rule", "vibes"), ("--rule", "vibes")),
])
def test_bad_inputs_are_named_with_exit_2_before_anything_is_written(tmp_path, names, prompts, extra, fragments):
    names_path, prompts_path = tmp_path / "names.txt", tmp_path / "edits.txt"
    if names is not None:
        names_path.write_text(names)
    args = ["--prompts", prompts_path] if prompts is not None else []
    if prompts is not None:
        prompts_path.write_text(prompts)
    result = run_cli("selfaug", "build", "--names", names_path, *args, *extra, "--model", "tiny",
                     "-o", tmp_path / "dataset")
    assert_one_line_error(result, 2, *fragments)
    assert not (tmp_path / "dataset").exists()
