"""Peak memory (max RSS) of a tiny generation run, each in a fresh process, against the
same process that only imports the libraries, and against the plain diffusers pipeline.

    python benchmarks/peak_memory.py
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

PHOTO = Path(__file__).resolve().parent.parent / "tests" / "data" / "faces" / "obama.jpg"
PROBES = {
    "import torch + diffusers + transformers": "import torch, diffusers, transformers; from diffusers import StableDiffusionPipeline",
    "plain tiny SD pipeline, 30 steps": (
        "import torch; from faceid_cli.models.tiny import build_tiny_sd; p = build_tiny_sd(); "
        "p.set_progress_bar_config(disable=True); "
        "p('a person as a chef', num_inference_steps=30, height=64, width=64, generator=[torch.Generator().manual_seed(0)])"
    ),
    "faceid generate on tiny, 30 steps (dlib + encoder)": (
        "from faceid_cli.pipeline_faceid import FaceIDPipeline; p = FaceIDPipeline.from_model('tiny'); "
        f"i = p.identity_from({str(PHOTO)!r}); p(i, 'S* as a chef', seeds=[0], steps=30)"
    ),
}
MEASURE = "import resource, sys\n{code}\nprint(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"


def main() -> None:
    results = {}
    for name, code in PROBES.items():
        done = subprocess.run([sys.executable, "-c", MEASURE.format(code=code)], capture_output=True, text=True,
                              check=True, env={"TRANSFORMERS_VERBOSITY": "error", "PATH": ""})
        results[name] = int(done.stdout.strip().splitlines()[-1]) / 1024  # KiB -> MiB
    base = results["plain tiny SD pipeline, 30 steps"]
    print("peak resident memory, one fresh process each")
    for name, mib in results.items():
        print(f"  {name:<52} {mib:8.1f} MiB   {mib / base:5.2f}x plain pipeline")
    print(json.dumps({k: round(v, 1) for k, v in results.items()}))


if __name__ == "__main__":
    main()
