"""Helpers the tests share: running the CLI, building bad image files."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from faceid_cli.cli import app


def run_cli(*args: str, input: str | None = None):
    """Invoke ``faceid ARGS`` in-process; stdout and stderr stay separate."""
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def assert_one_line_error(result, code: int, *fragments: str) -> str:
    """The spec's failure shape: exit ``code``, one ``Error:`` line on stderr, no traceback."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    error_lines = [line for line in lines if line.startswith("Error: ")]
    assert len(error_lines) == 1, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    for fragment in fragments:
        assert fragment in error_lines[0], (fragment, error_lines[0])
    return error_lines[0]


def record_pipeline_weights(monkeypatch, parts: tuple[str, ...]) -> dict:
    """Make ``load_pipeline`` remember the pipeline it loads and a copy of ``parts``' weights;
    ``changed(seen)`` then says which of them training altered."""
    from faceid_cli.models import registry

    seen: dict = {}
    original = registry.load_pipeline

    def recording(*args, **kwargs):
        pipe = original(*args, **kwargs)
        seen["pipe"] = pipe
        seen["before"] = {name: {k: v.clone() for k, v in getattr(pipe, name).state_dict().items()} for name in parts}
        return pipe

    monkeypatch.setattr(registry, "load_pipeline", recording)
    return seen


def changed(seen: dict) -> dict[str, bool]:
    import torch

    return {name: not all(torch.equal(before[k], getattr(seen["pipe"], name).state_dict()[k]) for k in before)
            for name, before in seen["before"].items()}


def parse_json(result) -> dict:
    return json.loads(result.stdout)


def build_machine_paths(folder) -> list[str]:
    """Every saved-model JSON under ``folder`` that names a folder of the machine it was made on
    (diffusers' ``_name_or_path``, or any absolute path): weights that travel must not."""
    from pathlib import Path

    def strings(value):
        if isinstance(value, dict):
            for key, item in value.items():
                yield key
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
        elif isinstance(value, str):
            yield value

    found = []
    for path in sorted(Path(folder).rglob("*.json")):
        if path.name == "tokenizer.json":  # a vocabulary: its strings are tokens, not paths
            continue
        for text in strings(json.loads(path.read_text(encoding="utf-8"))):
            if text == "_name_or_path" or text.startswith("/") or text[1:3] == ":\\":
                found.append(f"{path}: {text}")
    return found


def as_hub_cache(root, repo_id, folder):
    """Lay out ``folder`` as the Hugging Face cache stores a downloaded repo."""
    import shutil

    repo = root / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    return snapshot
