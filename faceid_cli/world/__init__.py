"""The miniature identity world: procedural people, and models trained on them from scratch.

Everything the method needs exists here at a size two CPU cores can train in minutes: people
with hidden identity traits (:mod:`.people`), contexts that prompts control (:mod:`.contexts`), a
renderer with ground truth (:mod:`.render`), and recipes (:mod:`.recipes`) for a diffusers
text-to-image pipeline (``--model world`` / ``world-xl``), a face backend (``--backend world``:
detector and recogniser), a transformers CLIP, a face-recognition ViT for the M² encoder, and a
context classifier that checks images against prompts with no learned text model involved.

The trained weights ship in :data:`WEIGHTS_DIR` (made by ``faceid world build``); every model
is loaded from there by the same code that loads real weights.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MissingModelError

WEIGHTS_ENV = "FACEID_WORLD_WEIGHTS"
#: the shipped weights (``faceid world build`` writes here unless told otherwise)
WEIGHTS_DIR = Path(__file__).parent / "weights"
#: component → folder name inside the weights folder (the one list of them)
COMPONENTS = {
    "world": "world",  # StableDiffusionPipeline
    "world-xl": "world-xl",  # StableDiffusionXLPipeline
    "clip": "clip",  # CLIPModel + tokenizer + image processor: the text-alignment scorer
    "recogniser": "recogniser",  # evaluation face recogniser
    "detector": "detector",  # face detector with five landmarks
    "classifier": "context-classifier",  # ground-truth context check
    "face-vit": "face-vit",  # arcface_torch-layout FaceViT: the M² encoder's backbone
    "m2-encoder": "m2-encoder",  # the M² encoder trained on world (faceid train configs/world.toml)
}
SUMMARY_NAME = "summary.json"
#: ``faceid world build``'s steps in build order (each step's seed follows from its place here)
BUILD_STEPS = ("recogniser", "detector", "classifier", "face-vit", "vae", "clip", "text_towers", "world", "world-xl",
               "m2-encoder")
#: what ships in the repository (19.8 MB, 18.9 MiB, with the M² encoder). world-xl does not: its UNet
#: and two text towers (11.6 MB) would take the world to about 32 MB against a 20 MB budget; it is built on request
#: (:data:`BUILD_WORLD_XL`), and the quick build in the tests covers its code paths.
SHIPPED = tuple(name for name in COMPONENTS if name != "world-xl")
BUILD_WORLD_XL = "faceid world build --only vae --only text_towers --only world-xl"


def weights_dir() -> Path:
    """Where the world's weights are read from: ``$FACEID_WORLD_WEIGHTS`` or the shipped folder."""
    return Path(os.environ[WEIGHTS_ENV]) if os.environ.get(WEIGHTS_ENV) else WEIGHTS_DIR


def component_path(name: str, root: Path | None = None, check: bool = True) -> Path:
    """The folder of one world model; a missing one raises the one-line error saying what to run."""
    if name not in COMPONENTS:
        raise KeyError(name)
    path = (root or weights_dir()) / COMPONENTS[name]
    if check and not path.is_dir():
        command = BUILD_WORLD_XL if name == "world-xl" else "faceid world build"
        raise MissingModelError(
            f"the world's {name} model is not at '{path}'",
            f"run '{command}' (or set FACEID_WORLD_WEIGHTS to a folder it wrote)",
        )
    return path
