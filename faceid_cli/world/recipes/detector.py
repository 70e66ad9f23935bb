"""The world's face detector: presence, face box and five landmarks regressed from the whole
image. Trained on renders (with their ground truth) and on pictures with no face in them
(backdrops, headless shoulders, noise, shuffled tiles), so that it answers "no face" when a
generated image holds none."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..nets import Detector
from ..render import render_negative
from .common import Reporter, WorldData, batches, degrade, lr_at, photometric_jitter, seed_everything, set_lr, update

DEFAULTS = {"identities": 2000, "per_identity": 16, "negatives": 6000, "steps": 800, "batch_size": 128,
            "lr": 2e-3, "negative_fraction": 0.25, "widths": [24, 32, 48, 64]}


def negative_images(count: int, seed: int) -> np.ndarray:
    return np.stack([np.asarray(render_negative(seed * 1_000_003 + i), dtype=np.uint8) for i in range(count)])


def train(data: WorldData, out: Path, config: dict, seed: int, report: Reporter) -> dict:
    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"])
    report.task("render pictures without faces", 1)
    negatives = torch.from_numpy(negative_images(config["negatives"], seed)).permute(0, 3, 1, 2).float() / 255
    report.advance(1)
    model = Detector(widths=tuple(config["widths"]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=config["lr"], weight_decay=1e-4)
    batch = config["batch_size"]
    n_negative = int(round(batch * config["negative_fraction"]))
    stream = batches(len(pool), batch - n_negative, generator)
    negative_stream = batches(len(negatives), n_negative, generator)
    report.task("train face detector", config["steps"])
    model.train()
    size = model.config["image_size"]
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        index = next(stream).numpy()
        images = torch.cat([pool.image_tensor(index), negatives[next(negative_stream)]])
        images = degrade(photometric_jitter(images, generator, 0.08), generator)
        present = torch.cat([torch.ones(len(index)), torch.zeros(n_negative)])
        logit, box, landmarks = model(images)
        loss = nn.functional.binary_cross_entropy_with_logits(logit, present)
        box_target = torch.from_numpy(pool.bboxes[index])
        landmark_target = torch.from_numpy(pool.landmarks[index])
        positives = slice(0, len(index))
        loss = loss + nn.functional.smooth_l1_loss(box[positives] / size, box_target / size, beta=0.02) * 10
        loss = loss + nn.functional.smooth_l1_loss(landmarks[positives] / size, landmark_target / size, beta=0.02) * 10
        update(optimizer, loss, step, config["steps"], report, every=200)
    model.eval()
    model.save_pretrained(out)
    return {"parameters": sum(p.numel() for p in model.parameters())}
