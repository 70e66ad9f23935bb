"""The ground-truth check: a CNN that reads every context attribute off a whole image, trained on
renders (softened and noised at times, as generated images are). It must score >= 99% on fresh
renders of people it never saw before it may judge a generator."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..nets import ContextClassifier
from .common import Reporter, WorldData, batches, degrade, lr_at, photometric_jitter, seed_everything, set_lr, update

DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 1500, "batch_size": 128, "lr": 2e-3,
            "widths": [24, 48, 64, 96]}


def train(data: WorldData, out: Path, config: dict, seed: int, report: Reporter) -> dict:
    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"])
    model = ContextClassifier(widths=tuple(config["widths"]))
    names = list(model.config["attributes"])
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    stream = batches(len(pool), config["batch_size"], generator)
    report.task("train context classifier", config["steps"])
    model.train()
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        index = next(stream).numpy()
        images = degrade(photometric_jitter(pool.image_tensor(index), generator, 0.08), generator)
        labels = torch.from_numpy(pool.labels[index])
        logits = model(images)
        loss = sum(nn.functional.cross_entropy(logits[name], labels[:, i]) for i, name in enumerate(names))
        update(optimizer, loss, step, config["steps"], report, every=200)
    model.eval()
    model.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters())}
