"""The world's M² encoder: ``faceid train`` itself, run as the last step of the world's build.

The encoder learns on the world's text-to-image model (frozen) from renders of the
``reconstruction`` population, a population no other model of the world saw, exactly as a user's
``faceid train configs/world.toml`` would: :data:`TRAIN_CONFIG` is the one home of that config's
values (a test keeps ``configs/world.toml`` equal to it). The build runs it with every world
component read from the folder being built, and ships the final encoder in fp16.
"""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

from .common import Reporter

#: the world's training config (configs/world.toml says the same, with the data path a user renders)
TRAIN_CONFIG: dict = {
    # the last layer only: on the world it kept more of unseen people than the multi-scale
    # features (0.284-0.309 against 0.218-0.223, four runs and two; configs/world.toml has the figures)
    "model": {"base": "world", "backbone": "world:face-vit", "num_words": 2, "hidden_dim": 256,
              "features": "last"},
    "data": {
        # each picture's own caption, naming its context with S* as the subject (the pool's
        # metadata.jsonl): 0.389 and 0.345 face similarity on held-out people in two seeds against
        # 0.309 with "a photo of S*", and a quarter of the context copying (configs/world.toml).
        # The templates, in the world's own words, serve --set data.captions=templates: the paper's
        # captions, which say nothing of the context and so teach the words to copy it
        "captions": "metadata", "templates": ["a photo of S*", "S*"],
        "resolution": 64, "cache_latents": True,
    },
    # 750 steps, inside the build's budget. With template captions a 3000-step run's checkpoints
    # kept held-out people equally at 750 and 1500 (face similarity 0.316, 0.309; 0.285 and 0.298 at
    # 2250 and 3000) while copying the reference's context more the longer it trained (0.030, 0.049,
    # 0.081, 0.074); captioned, 0.389 / 0.393 / 0.418 at 750 / 1500 / 2250, copying 0.010 / 0.012 /
    # 0.006 (seed 0): longer would help a little, at three times the minutes. bfloat16 (where
    # the CPU has it natively: "auto") and plain attention: a step 1.18x faster, the same figures
    # (1500 steps: 0.315 / 0.939 / 0.048 against fp32's 0.316 / 0.938 / 0.047)
    "train": {"steps": 750, "batch_size": 32, "micro_batch_size": 32, "learning_rate": 1e-3,
              "lr_warmup_steps": 100, "device": "cpu", "mixed_precision": "auto", "attention": "eager",
              # 10x the paper's λ: at 1e-4 the words grew to 40x the norm of the world's token embeddings
              # and crowded out the prompt (configs/world.toml says what it measured)
              "reg_weight": 1e-3},
    "output": {"checkpoint_every": 250, "validate_every": 250, "log_every": 10},
}
#: the build step's own numbers: the reconstruction pool's size, and the training length
DEFAULTS = {"identities": 2000, "per_identity": 2, "steps": TRAIN_CONFIG["train"]["steps"],
            "batch_size": TRAIN_CONFIG["train"]["batch_size"]}


def training_config(data: Path, out: Path, config: dict, seed: int) -> dict:
    """The resolved ``faceid train`` config for a build: :data:`TRAIN_CONFIG` on ``data``."""
    from ...train.config import check, merge
    from ...train.config import DEFAULTS as TRAIN_DEFAULTS

    resolved = merge(copy.deepcopy(TRAIN_DEFAULTS), copy.deepcopy(TRAIN_CONFIG))
    resolved["data"]["reconstruction"] = [str(data)]
    resolved["output"]["dir"] = str(out)
    resolved["train"].update(steps=int(config["steps"]), batch_size=int(config["batch_size"]),
                             micro_batch_size=int(config["batch_size"]), seed=int(seed))
    resolved["train"]["lr_warmup_steps"] = min(resolved["train"]["lr_warmup_steps"], max(1, config["steps"] // 5))
    resolved["output"]["checkpoint_every"] = int(config["steps"])
    check(resolved)
    return resolved


def train(weights: Path, work: Path, config: dict, seed: int, report: Reporter) -> dict:
    """Render the reconstruction pool into ``work``, train, and write ``weights/m2-encoder``."""
    from ...encoders import load_encoder
    from ...train import loop
    from .. import COMPONENTS, WEIGHTS_ENV
    from ...train.config import METADATA_NAMES
    from ..dataset import GROUND_TRUTH, write_dataset

    config = {**DEFAULTS, **config}
    data = Path(work) / "reconstruction"
    if not all((data / name).is_file() for name in (GROUND_TRUTH, METADATA_NAMES[0])):  # a pool and its captions
        report.task("render reconstruction pool", 1)
        write_dataset(data, "reconstruction", config["identities"], config["per_identity"], seed=seed)
        report.advance(1)
    run = Path(work) / "m2-run"
    shutil.rmtree(run, ignore_errors=True)  # a build trains from scratch, never resumes
    resolved = training_config(data, run, config, seed)
    report.task("train world M2 encoder", resolved["train"]["steps"])
    previous = os.environ.get(WEIGHTS_ENV)
    os.environ[WEIGHTS_ENV] = str(weights)  # "world", "world:face-vit" and the backend: the models being built
    try:
        result = loop.train(resolved, on_step=lambda metrics: report.advance(1))
    finally:
        if previous is None:
            os.environ.pop(WEIGHTS_ENV, None)
        else:
            os.environ[WEIGHTS_ENV] = previous
    encoder = load_encoder(result.encoder_dir)
    target = Path(weights) / COMPONENTS["m2-encoder"]
    shutil.rmtree(target, ignore_errors=True)
    # shipped in fp16 (load_encoder casts to the model's dtype); the frozen backbone is face-vit's own
    # tensors, so the encoder reads them from there rather than shipping them twice
    share = {"backbone.": f"../{COMPONENTS['face-vit']}"} if resolved["train"]["backbone"] == "frozen" else None
    encoder.half().save_pretrained(target, shared=share)
    losses = [m["diffusion"] for m in result.metrics]
    fifth = max(1, len(losses) // 5)
    return {"parameters": sum(p.numel() for p in encoder.parameters()), "steps": result.steps,
            "items": result.data.get("items"), "diffusion_first_fifth": sum(losses[:fifth]) / fifth,
            "diffusion_last_fifth": sum(losses[-fifth:]) / fifth}
