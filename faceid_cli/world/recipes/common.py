"""What the world's training recipes share: seeding, the learning-rate schedule, augmentation,
the cached pools of renders, and how progress is reported.

Every recipe is a function ``train(data, out, config, seed, report) -> metrics`` that writes its
model to ``out``; training is counted in steps, never in seconds, so a build is the same on every
run of the same machine.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ...models.precision import cpu_bf16_supported
from ..data import Pool, cached_pool, jobs_for
from ..people import population_seeds


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def lr_at(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def autocast(precision: str):
    """The forward passes' precision: "bf16" autocasts matmuls and convolutions to bfloat16 (the
    weights, optimiser and loss stay fp32), "fp32" does nothing, "auto" is bf16 where the CPU has
    native bfloat16 and fp32 elsewhere. Deterministic either way on one machine."""
    import contextlib

    if precision not in ("auto", "bf16", "fp32"):
        raise ValueError(f"precision {precision!r}: use auto, bf16 or fp32")
    if precision == "fp32" or (precision == "auto" and not cpu_bf16_supported()):
        return contextlib.nullcontext()
    return torch.autocast("cpu", dtype=torch.bfloat16)


def resolved_precision(precision: str) -> str:
    """What ``autocast(precision)`` will compute in on this machine, for the build's summary."""
    if precision == "auto":
        return "bf16" if cpu_bf16_supported() else "fp32"
    return precision


def drop_source_paths(folder: Path) -> None:
    """Remove the ``_name_or_path`` that diffusers writes into a saved model's config.json: it names
    the folder a part was loaded from on the build machine, which means nothing where the weights ship."""
    for path in sorted(Path(folder).rglob("config.json")):
        config = json.loads(path.read_text(encoding="utf-8"))
        if config.pop("_name_or_path", None) is not None:
            path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def photometric_jitter(images: torch.Tensor, generator: torch.Generator, strength: float = 0.1) -> torch.Tensor:
    """Random brightness and contrast per image (B, 3, H, W) in [0, 1]."""
    batch = images.shape[0]
    gain = 1 + (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * strength
    bias = (torch.rand(batch, 1, 1, 1, generator=generator) * 2 - 1) * strength * 0.5
    mean = images.mean(dim=(1, 2, 3), keepdim=True)
    return ((images - mean) * gain + mean + bias).clamp(0, 1)


@dataclass
class Reporter:
    """Progress (steps done) and one-line log messages; both optional."""

    advance: Callable[[int], None] = field(default=lambda n: None)
    log: Callable[[str], None] = field(default=lambda message: None)
    task: Callable[[str, int], None] = field(default=lambda name, total: None)


#: bump when the renderer changes, so cached pools are rendered anew
RENDER_VERSION = 5


@dataclass
class WorldData:
    """Pools of renders, rendered once per build (every recipe shares them) and cached in
    ``cache_dir`` (if given). ``seed`` is the build's: it fixes every pool's contexts and poses."""

    cache_dir: Path | None = None
    report: Reporter = field(default_factory=Reporter)
    seed: int = 0
    _pools: dict = field(default_factory=dict)

    def population_pool(self, population: str, identities: int, per_identity: int) -> Pool:
        """``per_identity`` random renders of each of the first ``identities`` of ``population``."""
        seed = self.seed
        key = {"population": population, "identities": identities, "per_identity": per_identity, "seed": seed,
               "version": RENDER_VERSION}
        name = str(sorted(key.items()))
        if name not in self._pools:
            jobs = jobs_for(population_seeds(population, identities), per_identity, seed)
            self.report.task(f"render {population} ×{per_identity}", len(jobs))
            self._pools[name] = cached_pool(self.cache_dir, key, jobs, progress=self.report.advance)
        return self._pools[name]

    def jobs_pool(self, key: dict, jobs) -> Pool:
        key = {**key, "version": RENDER_VERSION}
        name = str(sorted(key.items()))
        if name not in self._pools:
            self.report.task(f"render {key.get('name', 'pool')}", len(jobs))
            self._pools[name] = cached_pool(self.cache_dir, key, jobs, progress=self.report.advance)
        return self._pools[name]


def batches(count: int, batch_size: int, generator: torch.Generator):
    """Endless random index batches over ``count`` items (a fresh permutation each epoch)."""
    while True:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - batch_size + 1, batch_size):
            yield order[start:start + batch_size]


def degrade(images: torch.Tensor, generator: torch.Generator, max_blur: float = 1.2, max_noise: float = 0.04,
            probability: float = 0.5) -> torch.Tensor:
    """Blur and noise a random part of a batch, so models that judge *generated* images (softer and
    noisier than renders) are not thrown by them."""
    batch = images.shape[0]
    chosen = torch.rand(batch, generator=generator) < probability
    if not chosen.any():
        return images
    out = images.clone()
    picked = out[chosen]
    sigma = torch.rand(len(picked), generator=generator) * max_blur + 1e-3
    radius = 2
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernels = torch.exp(-offsets[None] ** 2 / (2 * sigma[:, None] ** 2))
    kernels = kernels / kernels.sum(1, keepdim=True)  # (n, 5)
    channels = picked.shape[1]
    flat = picked.reshape(1, -1, *picked.shape[-2:])
    kx = kernels.repeat_interleave(channels, 0)[:, None, None, :]
    ky = kernels.repeat_interleave(channels, 0)[:, None, :, None]
    flat = torch.nn.functional.conv2d(torch.nn.functional.pad(flat, (radius, radius, 0, 0), mode="replicate"), kx,
                                      groups=flat.shape[1])
    flat = torch.nn.functional.conv2d(torch.nn.functional.pad(flat, (0, 0, radius, radius), mode="replicate"), ky,
                                      groups=flat.shape[1])
    picked = flat.reshape(picked.shape)
    noise = torch.rand(len(picked), 1, 1, 1, generator=generator) * max_noise
    picked = picked + torch.randn(picked.shape, generator=generator) * noise
    out[chosen] = picked.clamp(0, 1)
    return out


def update(optimizer: torch.optim.Optimizer, loss: torch.Tensor, step: int, total: int, report: Reporter,
           clip: float | None = None, every: int = 100) -> None:
    """One optimiser step on ``loss`` (gradients clipped to ``clip`` if given), then progress, and
    a log line every ``every`` steps and at the last."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
    optimizer.step()
    report.advance(1)
    if step % every == 0 or step == total - 1:
        report.log(f"step {step}: loss {loss.item():.4f}")
