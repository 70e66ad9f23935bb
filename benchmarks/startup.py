"""How fast `faceid --help` answers, against `python -c "import torch"` (and diffusers-cli).

    python benchmarks/startup.py [--repeats 10]

Goal: `faceid --help` well under 0.3 s, a small fraction of importing torch.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402


def command(*args: str):
    return lambda: subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=10)
    repeats = parser.parse_args().repeats
    faceid = str(Path(sys.executable).parent / "faceid")
    contenders = {
        "faceid --help": command(faceid, "--help"),
        "faceid detect --help": command(faceid, "detect", "--help"),
        "python -c pass (interpreter alone)": command(sys.executable, "-c", "pass"),
    }
    if importlib.util.find_spec("torch"):
        contenders['python -c "import torch"'] = command(sys.executable, "-c", "import torch")
    else:
        print("torch is not installed here: `make bench` installs it for this comparison")
    diffusers_cli = shutil.which("diffusers-cli") or str(Path(sys.executable).parent / "diffusers-cli")
    if Path(diffusers_cli).exists():
        contenders["diffusers-cli --help"] = command(diffusers_cli, "--help")
    medians = interleaved(contenders, repeats)
    report(f"start-up, median of {repeats} interleaved runs", medians, "faceid --help")
    if 'python -c "import torch"' in medians:
        ratio = medians['python -c "import torch"'] / medians["faceid --help"]
        print(f"faceid --help is {ratio:.1f}x faster than importing torch")
    verdict = "OK" if medians["faceid --help"] < 0.3 else "TOO SLOW"
    print(f"faceid --help: {medians['faceid --help']:.3f} s (goal < 0.3 s): {verdict}")


if __name__ == "__main__":
    main()
