"""`faceid batch` end to end: formats, stdin, failures, sharding, kill-and-resume, completions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .helpers import parse_json, run_cli

STEPS = ("--steps", "2")


def _manifest(out: Path, name="manifest.jsonl") -> list[dict]:
    return [json.loads(line) for line in (out / name).read_text().splitlines()]


def _pngs(out: Path) -> set[str]:
    return {str(p.relative_to(out)) for p in out.rglob("*.png")}


def _write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(job) + "\n" for job in jobs))
    return path


@pytest.fixture
def good_jobs(faces_dir):
    return [
        {"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef", "name": "obama-chef", "seed": 1, "num_images": 2},
        {"face": [str(faces_dir / "biden.jpg"), str(faces_dir / "biden2.jpg")],
         "prompt": ["S* as a chef", "S* as a nurse"], "name": "portraits/biden", "seed": 5},
        {"face": str(faces_dir / "obama2.jpg"), "prompt": "S* wearing a hat", "name": "obama-hat", "seed": 9,
         "negative_prompt": "blurry"},
    ]


EXPECTED = {"obama-chef-1.png", "obama-chef-2.png", "portraits/biden-p0-5.png", "portraits/biden-p1-5.png",
            "obama-hat-9.png"}


def test_batch_renders_every_job_with_a_manifest(tmp_path, good_jobs):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs)
    out = tmp_path / "out"
    result = run_cli("batch", jobs, "-o", out, *STEPS)
    assert result.exit_code == 0, result.stderr
    assert _pngs(out) == EXPECTED
    records = _manifest(out)
    assert len(records) == 5 and all(r["status"] == "ok" and r["error"] is None for r in records)
    by_file = {r["files"][0]: r for r in records}
    assert by_file["obama-chef-2.png"]["seed"] == 2 and by_file["obama-chef-2.png"]["job"] == "obama-chef"
    assert by_file["portraits/biden-p1-5.png"]["prompt"] == "S* as a nurse"
    assert all((out / r["files"][1]).is_file() for r in records), "sidecars are listed and exist"
    assert "5 images written" in result.stdout


def test_batch_equals_generate_for_the_same_job(tmp_path, faces_dir):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [{"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef",
                                                  "name": "x", "seed": 4}])
    assert run_cli("batch", jobs, "-o", tmp_path / "b", *STEPS, "--batch-size", "1").exit_code == 0
    document = parse_json(run_cli("generate", faces_dir / "obama.jpg", "S* as a chef", "--seed", "4", *STEPS,
                                  "-o", tmp_path / "g", "--json"))
    with Image.open(tmp_path / "b" / "x-4.png") as a, Image.open(document["images"][0]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))


def test_a_folder_face_is_its_photos_fused(tmp_path, faces_dir):
    """`face` may be a folder: its photos are fused, as generate fuses a folder, and the images
    record every photo; an empty folder fails that job alone, named (and in --dry-run)."""
    person = tmp_path / "obama"
    person.mkdir()
    for name in ("obama.jpg", "obama2.jpg"):
        (person / name).write_bytes((faces_dir / name).read_bytes())
    (tmp_path / "nobody").mkdir()
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [
        {"face": "obama", "prompt": "S* as a chef", "name": "x", "seed": 4},
        {"face": "nobody", "prompt": "S* as a chef", "name": "y", "seed": 4},
        {"face": "nobody", "prompt": "S* as a chef", "name": "z", "seed": 4, "method": "none"}])
    dry = run_cli("batch", jobs, "-o", tmp_path / "dry", "--dry-run", *STEPS)
    assert "job 'y'" in dry.stdout + dry.stderr and "holds no photo" in dry.stdout + dry.stderr
    result = run_cli("batch", jobs, "-o", tmp_path / "b", *STEPS, "--batch-size", "1")
    assert result.exit_code == 1 and "holds no photo" in result.stderr + result.stdout
    assert _pngs(tmp_path / "b") == {"x-4.png"}
    failed = {r["job"] for r in _manifest(tmp_path / "b") if r["status"] != "ok"}
    assert failed == {"y", "z"}  # with no identity to encode too, the folder fails its job alone
    document = parse_json(run_cli("generate", person, "S* as a chef", "--seed", "4", *STEPS, "-o", tmp_path / "g",
                                  "--json"))
    with Image.open(tmp_path / "b" / "x-4.png") as a, Image.open(document["images"][0]) as b:
        assert np.array_equal(np.asarray(a), np.asarray(b))
    sidecar = json.loads((tmp_path / "b" / "x-4.json").read_text())
    assert [Path(r).name for r in sidecar["reference"]] == ["obama.jpg", "obama2.jpg"]


def test_mixed_good_and_bad_jobs(tmp_path, faces_dir, good_jobs):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 100), (50, 50, 50)).save(blank)
    bad = [
        {"face": str(blank), "prompt": "S* as a chef", "name": "no-face"},
        {"face": str(tmp_path / "missing.jpg"), "prompt": "S* as a chef", "name": "missing"},
        {"face": str(faces_dir / "obama.jpg"), "prompt": "a chef", "name": "no-token"},
        {"face": str(faces_dir / "obama.jpg"), "prompt": "S*", "name": "../../outside"},
        {"face": str(faces_dir / "obama.jpg"), "prompt": "S*", "name": "/tmp/absolute"},
    ]
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs[:1] + bad + good_jobs[2:])
    out = tmp_path / "out"
    result = run_cli("batch", jobs, "-o", out, *STEPS)
    assert result.exit_code == 1
    assert _pngs(out) == {"obama-chef-1.png", "obama-chef-2.png", "obama-hat-9.png"}
    records = _manifest(out)
    failed = {r["job"]: r["error"] for r in records if r["status"] == "failed"}
    assert set(failed) == {"no-face", "missing", "no-token", "../../outside", "/tmp/absolute"}
    assert "no face found" in failed["no-face"] and "does not exist" in failed["missing"]
    assert "does not mention" in failed["no-token"] and "leave the output folder" in failed["../../outside"]
    assert len([r for r in records if r["status"] == "ok"]) == 3
    assert not (tmp_path / "outside").exists() and not Path("/tmp/absolute-0.png").exists()
    assert "5 of 7 jobs failed" in result.stderr and "Traceback" not in result.stderr
    assert "no-face" in result.stdout, "the summary table names the failed jobs"


@pytest.mark.parametrize("fmt", ["csv", "toml"])
def test_csv_and_toml_and_stdin(tmp_path, faces_dir, fmt):
    obama, biden = faces_dir / "obama.jpg", faces_dir / "biden.jpg"
    if fmt == "csv":
        text = f'face,prompt,name,seed\n{obama},S* as a chef,a,1\n"[""{biden}""]",S* as a nurse,b,2\n'
    else:
        text = (f'[defaults]\nseed = 1\n\n[[jobs]]\nface = "{obama}"\nprompt = "S* as a chef"\nname = "a"\n\n'
                f'[[jobs]]\nface = ["{biden}"]\nprompt = "S* as a nurse"\nname = "b"\nseed = 2\n')
    path = tmp_path / f"jobs.{fmt}"
    path.write_text(text)
    assert run_cli("batch", path, "-o", tmp_path / "file", *STEPS).exit_code == 0
    result = run_cli("batch", "-", "-o", tmp_path / "stdin", *STEPS, "--json", input=text)
    assert result.exit_code == 0, result.stderr
    assert _pngs(tmp_path / "file") == _pngs(tmp_path / "stdin") == {"a-1.png", "b-2.png"}
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert {line["files"][0] for line in lines} == {"a-1.png", "b-2.png"}
    assert all(line["status"] == "ok" for line in lines)


def test_rerun_does_nothing_and_dry_run_lists(tmp_path, good_jobs):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs)
    out = tmp_path / "out"
    run_cli("batch", jobs, "-o", out, *STEPS)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    again = run_cli("batch", jobs, "-o", out, *STEPS, "--json")
    assert again.exit_code == 0 and again.stdout == ""
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == before
    assert len(_manifest(out)) == 5, "no duplicate lines"
    (out / "obama-hat-9.png").unlink()
    dry = run_cli("batch", jobs, "-o", out, "--dry-run", "--json")
    status = {json.loads(line)["file"]: json.loads(line)["status"] for line in dry.stdout.splitlines()}
    assert status["obama-hat-9.png"] == "todo" and status["obama-chef-1.png"] == "done"
    assert _pngs(out) == EXPECTED - {"obama-hat-9.png"}, "dry runs write nothing"


def test_shards_split_one_output_folder(tmp_path, faces_dir):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [
        {"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a chef", "name": f"j{i}", "seed": i} for i in range(5)])
    out = tmp_path / "out"
    for shard in ("0/2", "1/2"):
        assert run_cli("batch", jobs, "-o", out, "--shard", shard, *STEPS).exit_code == 0
    assert _pngs(out) == {f"j{i}-{i}.png" for i in range(5)}
    first = {r["job"] for r in _manifest(out, "manifest.shard-0-of-2.jsonl")}
    second = {r["job"] for r in _manifest(out, "manifest.shard-1-of-2.jsonl")}
    assert first == {"j0", "j2", "j4"} and second == {"j1", "j3"}


def _start_batch(jobs: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "faceid_cli", "batch", str(jobs), "-o", str(out), "--batch-size", "1", *STEPS],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "FACEID_INSIGHTFACE_ROOT": str(out.parent / "no-packs")},
        # a test suite started in the background of a non-interactive shell (`make test &`, CI
        # wrappers) inherits SIGINT ignored, and so would the batch: give it the default, as a
        # terminal's Ctrl-C would find it
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _kill_after(process: subprocess.Popen, out: Path, images: int, sig=signal.SIGKILL, timeout=120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"batch ended before {images} images: {process.stderr.read()}")
        if out.exists() and len(_pngs(out)) >= images:
            process.send_signal(sig)
            process.wait(timeout=60)
            return
        time.sleep(0.02)
    process.kill()
    raise AssertionError("timed out waiting for images")


def test_sigkill_and_resume_at_several_points(tmp_path, good_jobs):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs)
    out = tmp_path / "out"
    for done in (1, 3):
        _kill_after(_start_batch(jobs, out), out, done)
        assert len(_pngs(out)) >= done
        for png in out.rglob("*.png"):  # whatever is there is whole
            with Image.open(png) as image:
                image.load()
    finished = _start_batch(jobs, out)
    stdout, stderr = finished.communicate(timeout=300)
    assert finished.returncode == 0, stderr
    assert _pngs(out) == EXPECTED
    assert not list(out.rglob("*.part")), "no temporary files are left behind"
    records = _manifest(out)
    assert sorted(r["files"][0] for r in records) == sorted(EXPECTED), "one line per image, none twice"
    # the interrupted run made exactly the images an uninterrupted one makes
    clean = tmp_path / "clean"
    assert run_cli("batch", jobs, "-o", clean, *STEPS, "--batch-size", "1").exit_code == 0
    for name in EXPECTED:
        with Image.open(out / name) as a, Image.open(clean / name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), name


def test_a_second_run_on_the_same_output_fails_at_once(tmp_path, good_jobs):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs)
    out = tmp_path / "out"
    first = _start_batch(jobs, out)
    try:
        deadline = time.monotonic() + 120
        while not (out.exists() and _pngs(out)) and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.02)
        second = run_cli("batch", jobs, "-o", out, *STEPS)
        assert second.exit_code == 1
        message = second.stderr.strip()
        assert len(message.splitlines()) == 1 and f"process {first.pid}" in message and "--shard" in message
        assert str(out / "manifest.jsonl") in message
    finally:
        stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert sorted(r["files"][0] for r in _manifest(out)) == sorted(EXPECTED), "the work was done once"


def test_sigint_stops_cleanly_and_says_how_to_resume(tmp_path, good_jobs, faces_dir):
    # enough work after the first image that the signal always lands mid-run
    many = {"face": str(faces_dir / "obama.jpg"), "prompt": "S* as a nurse", "name": "many", "seed": 20,
            "num_images": 60}
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [*good_jobs, many])
    out = tmp_path / "out"
    process = _start_batch(jobs, out)
    _kill_after(process, out, 1, sig=signal.SIGINT)
    assert process.returncode == 130
    stderr = process.stderr.read()
    assert "run the same command again to resume" in stderr and "Traceback" not in stderr
    records = _manifest(out)
    assert {r["files"][0] for r in records} == _pngs(out), "every image on disk is recorded"


def test_completion_scripts_are_up_to_date():
    from faceid_cli.cli.completion import completion_script

    folder = Path(__file__).resolve().parent.parent / "completions"
    for shell, name in (("bash", "faceid.bash"), ("zsh", "_faceid"), ("fish", "faceid.fish")):
        assert (folder / name).read_text() == completion_script(shell), f"run 'make completions' ({name})"


def test_completion_offers_model_and_scheduler_names(monkeypatch):
    env = {**os.environ, "_FACEID_COMPLETE": "complete_bash", "COMP_WORDS": "faceid generate x.jpg --model tiny",
           "COMP_CWORD": "4"}
    done = subprocess.run([sys.executable, "-m", "faceid_cli"], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["tiny", "tiny-xl"]
    env.update(COMP_WORDS="faceid batch jobs.jsonl --scheduler euler", COMP_CWORD="4")
    done = subprocess.run([sys.executable, "-m", "faceid_cli"], env=env, capture_output=True, text=True)
    assert done.stdout.split() == ["euler", "euler-a"]


def test_models_load_once_and_identities_encode_once(tmp_path, faces_dir, monkeypatch):
    from faceid_cli import pipeline_faceid

    loads, encodes = [], []
    original_from_model = pipeline_faceid.FaceIDPipeline.from_model.__func__
    original_encode = pipeline_faceid.encode_identity

    def counting_from_model(cls, model="tiny", **kwargs):
        loads.append(model)
        return original_from_model(cls, model, **kwargs)

    def counting_encode(encoder, analyzer, sources, **kwargs):
        encodes.append(tuple(str(s) for s in sources))
        return original_encode(encoder, analyzer, sources, **kwargs)

    monkeypatch.setattr(pipeline_faceid.FaceIDPipeline, "from_model", classmethod(counting_from_model))
    monkeypatch.setattr(pipeline_faceid, "encode_identity", counting_encode)
    obama, biden = str(faces_dir / "obama.jpg"), str(faces_dir / "biden.jpg")
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [
        {"face": obama, "prompt": "S* as a chef", "name": "a", "num_images": 2},
        {"face": obama, "prompt": ["S* as a nurse", "S* in the rain"], "name": "b"},
        {"face": biden, "prompt": "S* as a chef", "name": "c"},
        {"face": obama, "prompt": "S* as a chef", "name": "d", "model": "tiny-xl"},
    ])
    result = run_cli("batch", jobs, "-o", tmp_path / "out", *STEPS)
    assert result.exit_code == 0, result.stderr
    assert sorted(loads) == ["tiny", "tiny-xl"], "one load per model"
    assert sorted(encodes) == sorted([(obama,), (biden,), (obama,)]), "one encoding per face and model"
    assert len(_pngs(tmp_path / "out")) == 6


def test_out_of_memory_batches_are_split_and_retried(tmp_path, faces_dir, good_jobs, monkeypatch):
    import torch
    from diffusers import StableDiffusionPipeline

    original_call = StableDiffusionPipeline.__call__
    sizes = []

    def small_memory(self, *args, **kwargs):
        sizes.append(len(kwargs["generator"]))
        if len(kwargs["generator"]) > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return original_call(self, *args, **kwargs)

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", small_memory)
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs[:2])
    result = run_cli("batch", jobs, "-o", tmp_path / "out", *STEPS, "--batch-size", "4")
    assert result.exit_code == 0, result.stderr
    assert _pngs(tmp_path / "out") == {"obama-chef-1.png", "obama-chef-2.png", "portraits/biden-p0-5.png",
                                       "portraits/biden-p1-5.png"}
    assert sizes[0] == 4 and sizes.count(1) == 4


def test_a_job_out_of_memory_one_image_at_a_time_fails_alone(tmp_path, faces_dir, good_jobs, monkeypatch):
    import torch
    from diffusers import StableDiffusionPipeline

    def no_memory(self, *args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(StableDiffusionPipeline, "__call__", no_memory)
    jobs = _write_jobs(tmp_path / "jobs.jsonl", good_jobs[:1])
    result = run_cli("batch", jobs, "-o", tmp_path / "out", *STEPS, "--batch-size", "2")
    assert result.exit_code == 1 and "1 of 1 jobs failed" in result.stderr, result.stderr
    failures = [json.loads(line) for line in (tmp_path / "out" / "manifest.jsonl").read_text().splitlines()]
    assert [f["status"] for f in failures] == ["failed"]
    assert "out of memory rendering 1 image of 64x64 on cpu; lower --height/--width" in failures[0]["error"]
    assert _pngs(tmp_path / "out") == set()
