"""The evaluation recogniser: a small CNN trained with a CosFace margin on the ``recogniser``
population, from aligned crops with jittered landmarks (detectors are not exact)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..data import align_batch
from ..nets import Recogniser
from .common import Reporter, WorldData, batches, lr_at, photometric_jitter, seed_everything, set_lr, update

DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 2000, "batch_size": 128, "lr": 3e-3,
            "margin": 0.35, "scale": 30.0, "landmark_jitter": 0.8, "input_size": 32, "widths": [32, 64, 128, 192],
            "embedding_dim": 128}


def cosface_logits(embeddings: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor, margin: float,
                   scale: float) -> torch.Tensor:
    cosine = embeddings @ nn.functional.normalize(weight, dim=-1).T
    return scale * (cosine - margin * nn.functional.one_hot(labels, weight.shape[0]))


def aligned_crops(pool, index, generator, jitter: float, size: int, supersample: int = 2) -> torch.Tensor:
    """Crops of ``size`` px from landmarks moved by ``jitter`` px (detectors are not exact).

    ``supersample`` 2: as a model reducing 112 px crops to ``size`` sees them, aligned at twice the
    size (bilinear, a quarter of the cost of 112 px) and averaged down."""
    images = pool.image_tensor(index.numpy())
    landmarks = torch.from_numpy(pool.landmarks[index.numpy()]).double()
    landmarks = landmarks + torch.randn(landmarks.shape, generator=generator, dtype=torch.float64) * jitter
    crops = align_batch(images, landmarks, supersample * size, mode="bilinear")
    return nn.functional.avg_pool2d(crops, supersample) if supersample > 1 else crops


def train_embedder(model: nn.Module, pool, config: dict, generator: torch.Generator, report: Reporter,
                   crop_size: int, supersample: int = 2) -> None:
    """CosFace training of any crop → normalised-embedding model on a pool's identities."""
    identities, labels = torch.unique(torch.from_numpy(pool.identities), return_inverse=True)
    head = nn.Parameter(torch.randn(len(identities), config["embedding_dim"]) * 0.01)
    optimizer = torch.optim.AdamW([*model.parameters(), head], lr=config["lr"], weight_decay=5e-4)
    model.train()
    stream = batches(len(pool), config["batch_size"], generator)
    report.task(config.get("task", "train recogniser"), config["steps"])
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"], warmup=min(100, config["steps"] // 10)))
        index = next(stream)
        crops = aligned_crops(pool, index, generator, config["landmark_jitter"], crop_size, supersample)
        crops = photometric_jitter(crops, generator)
        logits = cosface_logits(model(crops), head, labels[index], config["margin"], config["scale"])
        loss = nn.functional.cross_entropy(logits, labels[index])
        update(optimizer, loss, step, config["steps"], report)
    model.eval()


def train(data: WorldData, out: Path, config: dict, seed: int, report: Reporter) -> dict:
    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"])
    model = Recogniser(input_size=config["input_size"], widths=tuple(config["widths"]),
                       embedding_dim=config["embedding_dim"])
    train_embedder(model, pool, config, generator, report, crop_size=config["input_size"])
    check = calibrate(model, 200, 4, seed + 1, offset=config["identities"])
    model.config["same_person_threshold"] = round(check["threshold"], 4)
    model.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters()), "validation": check}


def calibrate(model: nn.Module, identities: int, per_identity: int, seed: int, offset: int) -> dict:
    """Verification on people of the recogniser's population it did not train on (those after its
    training set): the same/different threshold the world backend uses."""
    from ..data import jobs_for, render_pool
    from ..people import population_seeds
    from ..quality import verification

    pool = render_pool(jobs_for(population_seeds("recogniser", identities, offset), per_identity, seed))
    with torch.inference_mode():
        embeddings = model(align_batch(pool.image_tensor(), torch.from_numpy(pool.landmarks).double(), 112))
    return verification(embeddings, pool.identities)
