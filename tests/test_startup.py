"""Start-up: the console script exists and `--help` imports no heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers", "insightface", "dlib", "onnxruntime", "cv2", "skimage", "scipy",
         "numpy", "PIL", "rich")
PROBE = """
import json, sys
from faceid_cli.cli import main
sys.argv = ["faceid", *json.loads(sys.argv[1])]
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in {heavy!r} if m in sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], *([command, "--help"] for command in (
    "detect", "compare", "encode", "generate", "batch", "train", "evaluate", "selfaug", "models", "completion", "world"))])
def test_help_imports_nothing_heavy(args):
    done = subprocess.run([sys.executable, "-c", PROBE.format(heavy=HEAVY), json.dumps(args)],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip(), "help text was printed"
    assert json.loads(done.stderr.strip().splitlines()[-1]) == []


def test_console_script_and_module_entry_points():
    script = Path(sys.executable).parent / "faceid"
    assert script.exists(), "pip install -e . provides the faceid console script"
    env = {**os.environ, "NO_COLOR": "1"}
    for command in ([str(script), "--help"], [sys.executable, "-m", "faceid_cli", "--help"]):
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        assert done.returncode == 0 and "detect" in done.stdout and "compare" in done.stdout


def test_the_private_typer_api_faceid_uses_is_there():
    """faceid reaches into three private Typer/click names; pyproject bounds Typer to the release
    tested here, and this fails loudly if that release (or a widened bound) lacks one of them."""
    import inspect
    from importlib.metadata import version

    import click
    from typer._completion_classes import completion_init
    from typer._completion_shared import get_completion_script

    assert callable(completion_init)
    assert set(inspect.signature(get_completion_script).parameters) >= {"prog_name", "complete_var", "shell"}
    assert callable(getattr(click.Option, "process_value", None))
    text = (Path(__file__).parents[1] / "pyproject.toml").read_text()
    bound = next(line for line in text.splitlines() if line.strip().startswith('"typer'))
    low, high = (part.split("=")[-1].split("<")[-1] for part in bound.strip(' ",').removeprefix("typer").split(","))
    installed = tuple(int(x) for x in version("typer").split(".")[:2])
    assert tuple(int(x) for x in low.split(".")[:2]) <= installed < tuple(int(x) for x in high.split(".")[:2])
