"""Jobs files: the three formats, validation, output-name safety, sharding, planning."""

from __future__ import annotations

import io
import json

import pytest

from faceid_cli.batch import plan
from faceid_cli.errors import InvalidArgumentError
from faceid_cli.jobs import check_output_name, default_seed, parse_shard, read_jobs, shard_jobs

JSONL = """\
{"face": "a.jpg", "prompt": "S* as a chef", "name": "chef-a", "seed": 3, "num_images": 2}
# comments and blank lines are skipped

{"face": ["b.jpg", "b2.jpg"], "prompt": ["S* as a chef", "S* as a nurse"], "steps": 20}
{"face": "me.safetensors", "prompt": "oil painting of S*", "guidance": "6.5"}
"""
CSV = """\
face,prompt,name,seed,num_images,steps,guidance
a.jpg,S* as a chef,chef-a,3,2,,
"[""b.jpg"", ""b2.jpg""]","[""S* as a chef"", ""S* as a nurse""]",,,,20,
me.safetensors,"oil painting of S*, soft light",,,,,6.5
"""
TOML = """\
[defaults]
steps = 20

[[jobs]]
face = "a.jpg"
prompt = "S* as a chef"
name = "chef-a"
seed = 3
num_images = 2
steps = 30

[[jobs]]
face = ["b.jpg", "b2.jpg"]
prompt = ["S* as a chef", "S* as a nurse"]

[[jobs]]
face = "me.safetensors"
prompt = "oil painting of S*, soft light"
guidance = 6.5
"""


@pytest.mark.parametrize("suffix,text", [(".jsonl", JSONL), (".csv", CSV), (".toml", TOML)])
def test_three_formats_carry_the_same_fields(tmp_path, suffix, text):
    path = tmp_path / f"jobs{suffix}"
    path.write_text(text)
    jobs = read_jobs(str(path))
    assert [job.error for job in jobs] == [None, None, None]
    first, second, third = jobs
    assert first.name == "chef-a" and first.faces == (str(tmp_path / "a.jpg"),)
    assert first.settings["seed"] == 3 and first.settings["num_images"] == 2
    assert second.faces == (str(tmp_path / "b.jpg"), str(tmp_path / "b2.jpg"))
    assert second.prompts == ("S* as a chef", "S* as a nurse") and second.settings["steps"] == 20
    assert second.name == "job-00001"
    assert third.settings["guidance"] == 6.5 and third.faces[0].endswith("me.safetensors")


def test_stdin_and_format_detection(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(JSONL))
    jobs = read_jobs("-")
    assert len(jobs) == 3 and jobs[0].faces == (str(tmp_path / "a.jpg"),)
    monkeypatch.setattr("sys.stdin", io.StringIO(TOML))
    assert read_jobs("-")[1].settings["steps"] == 20
    monkeypatch.setattr("sys.stdin", io.StringIO(CSV))
    assert read_jobs("-")[0].name == "chef-a"


def test_command_line_defaults_sit_between_the_job_and_the_file(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text(TOML)
    jobs = read_jobs(str(path), defaults={"steps": 10, "guidance": 5.0})
    assert jobs[0].settings["steps"] == 30, "the job's own value wins"
    assert jobs[1].settings["steps"] == 10, "the command line beats the file's [defaults]"
    assert jobs[2].settings["guidance"] == 6.5


@pytest.mark.parametrize("line,fragment", [
    ('{"face": "a.jpg", "prompt": "S*", "colour": "red"}', "unknown field colour"),
    ('{"face": "a.jpg"}', "no 'prompt'"),
    ('{"prompt": "S*"}', "no 'face'"),
    ('{"face": "a.jpg", "prompt": "S*", "steps": "many"}', "'steps' must be int"),
    ('{"face": "a.jpg", "prompt": "S*", "seed": 1.5}', "'seed' must be int"),
    ('{"face": 3, "prompt": "S*"}', "'face' must be"),
    ('[1, 2]', "not a JSON object"),
    ('{"face": "a.jpg", "prompt": "S*"', "not valid JSON"),
    ('{"face": "a.jpg", "prompt": "S*", "seed": 99999999999999999999999}', "'seed' must be between 0 and"),
    ('{"face": "a.jpg", "prompt": "S*", "seed": -1}', "'seed' must be between 0 and"),
    ('{"face": "a.jpg", "prompt": "S*", "num_images": 0}', "'num_images' must be at least 1, got 0"),
    ('{"face": "a.jpg", "prompt": "S*", "steps": 0}', "'steps' must be between 1 and 1000"),
    ('{"face": "a.jpg", "prompt": "S*", "guidance": NaN}', "'guidance' must be a finite number"),
    ('{"face": "a.jpg", "prompt": "S*", "guidance": -2}', "'guidance' must be at least 0.0"),
    ('{"face": "a.jpg", "prompt": "S*", "face_index": -1}', "'face_index' must be at least 0"),
    ('{"face": "a.jpg", "prompt": "S*", "identity_start": 1.5}', "'identity_start' must be between 0.0 and 1.0"),
    ('{"face": "a.jpg", "prompt": "S*", "height": 4}', "'height' must be at least 8"),
])
def test_a_bad_job_fails_alone(tmp_path, line, fragment):
    path = tmp_path / "jobs.jsonl"
    path.write_text(line + "\n" + '{"face": "a.jpg", "prompt": "S* as a chef"}\n')
    bad, good = read_jobs(str(path))
    assert bad.error and fragment in bad.error and "line 1" in bad.error
    assert good.error is None


@pytest.mark.parametrize("name", ["../escape", "/etc/passwd", "a/../../b", "~/x", ".hidden", "a\\..\\b", ""])
def test_output_names_cannot_escape(name):
    with pytest.raises(ValueError):
        check_output_name(name)


@pytest.mark.parametrize("name", ["chef", "portraits/chef-a", "a/b/c"])
def test_relative_output_names_are_fine(name):
    assert check_output_name(name) == name


def test_escaping_name_in_a_file_is_a_failed_job(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"face": "a.jpg", "prompt": "S*", "name": "../../etc/x"}\n')
    [job] = read_jobs(str(path))
    assert "would leave the output folder" in job.error


def test_duplicate_names_are_refused(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"face": "a.jpg", "prompt": "S*", "name": "x"}\n{"face": "b.jpg", "prompt": "S*", "name": "x"}\n')
    first, second = read_jobs(str(path))
    assert first.error is None and "already used" in second.error


def test_unparseable_files_are_refused_whole(tmp_path):
    path = tmp_path / "jobs.toml"
    path.write_text("[[jobs]\nface = ")
    with pytest.raises(InvalidArgumentError, match="not valid TOML"):
        read_jobs(str(path))
    csv_path = tmp_path / "jobs.csv"
    csv_path.write_text("photo,text\na.jpg,hi\n")
    with pytest.raises(InvalidArgumentError, match="'face' and 'prompt' columns"):
        read_jobs(str(csv_path))
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        read_jobs(str(tmp_path / "nope.jsonl"))


def test_shards_partition_the_jobs_exactly(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text("".join(json.dumps({"face": "a.jpg", "prompt": "S*", "name": f"j{i}"}) + "\n" for i in range(23)))
    jobs = read_jobs(str(path))
    for count in (1, 2, 3, 7, 30):
        shards = [shard_jobs(jobs, i, count) for i in range(count)]
        names = [job.name for shard in shards for job in shard]
        assert sorted(names) == sorted(job.name for job in jobs) and len(names) == len(set(names))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert [j.name for j in shard_jobs(jobs, 1, 3)] == [j.name for j in shard_jobs(read_jobs(str(path)), 1, 3)]


def test_parse_shard(monkeypatch):
    assert parse_shard(None) == (0, 1) and parse_shard("2/5") == (2, 5)
    for bad in ("5/5", "-1/3", "1/0", "x"):
        with pytest.raises(InvalidArgumentError):
            parse_shard(bad)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "4")
    assert parse_shard("auto") == (1, 4)


def test_plan_names_and_seeds(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text(JSONL)
    _, items = plan(read_jobs(str(path)))
    files = [item.file for item in items]
    seed_b = default_seed("job-00001")
    assert files[:2] == ["chef-a-3.png", "chef-a-4.png"]
    assert files[2:4] == [f"job-00001-p0-{seed_b}.png", f"job-00001-p1-{seed_b}.png"]
    assert default_seed("job-00001") == seed_b, "stable across runs"


def test_colliding_file_names_fail_the_later_job(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"face": "a.jpg", "prompt": ["S* one", "S* two"], "name": "a", "seed": 5}\n'
                    '{"face": "a.jpg", "prompt": "S* three", "name": "a-p0", "seed": 5}\n')
    jobs, items = plan(read_jobs(str(path)))
    assert [item.file for item in items] == ["a-p0-5.png", "a-p1-5.png"]
    assert jobs[0].error is None and "also an image of job 'a'" in jobs[1].error
