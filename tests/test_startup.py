"""Start-up: the console script exists and `--help` imports no heavy library."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("torch", "diffusers", "transformers", "insightface", "dlib", "onnxruntime", "numpy",
         "PIL", "rich")
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


@pytest.mark.parametrize("args", [["--help"], ["detect", "--help"], ["compare", "--help"], ["--version"]])
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
