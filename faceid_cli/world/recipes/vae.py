"""The world's VAE: a diffusers ``AutoencoderKL`` (4 latent channels, 4x downsampling) trained on
renders, so the text-to-image model works on 16x16 latents as Stable Diffusion works on 64x64.

Reconstruction is weighted towards the face box (identity lives in a few pixels there); the KL
term is kept tiny, as in Stable Diffusion's autoencoders. The latent scaling factor (1 / std of
latents) is measured after training and written into the config, where the pipelines read it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .common import Reporter, WorldData, batches, lr_at, seed_everything, set_lr

DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 1500, "batch_size": 64, "lr": 1e-3, "kl_weight": 1e-6,
            "face_weight": 4.0, "block_out_channels": [32, 64, 64], "latent_channels": 4}


def build_vae(config: dict):
    from diffusers import AutoencoderKL

    levels = len(config["block_out_channels"])
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels, block_out_channels=tuple(config["block_out_channels"]),
        latent_channels=config["latent_channels"], layers_per_block=1, norm_num_groups=16, sample_size=64,
    )


def face_weights(bboxes: torch.Tensor, size: int, weight: float) -> torch.Tensor:
    """(B, 1, size, size): ``weight`` inside each face box, 1 elsewhere."""
    coords = torch.arange(size, dtype=torch.float32)
    inside_x = (coords[None] >= bboxes[:, 0:1] - 1) & (coords[None] <= bboxes[:, 2:3] + 1)
    inside_y = (coords[None] >= bboxes[:, 1:2] - 1) & (coords[None] <= bboxes[:, 3:4] + 1)
    inside = inside_y[:, :, None] & inside_x[:, None, :]
    return 1 + (weight - 1) * inside[:, None].float()


def train(data: WorldData, out: Path, config: dict, seed: int, report: Reporter) -> dict:
    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"], seed=seed)
    vae = build_vae(config)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=config["lr"], weight_decay=0.0)
    stream = batches(len(pool), config["batch_size"], generator)
    report.task("train VAE", config["steps"])
    vae.train()
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        index = next(stream).numpy()
        images = pool.image_tensor(index) * 2 - 1
        posterior = vae.encode(images).latent_dist
        latents = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=generator)
        recon = vae.decode(latents).sample
        weights = face_weights(torch.from_numpy(pool.bboxes[index]), images.shape[-1], config["face_weight"])
        error = recon - images
        loss = (weights * (error.abs() + error.pow(2))).mean() + config["kl_weight"] * posterior.kl().mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        optimizer.step()
        report.advance(1)
        if step % 250 == 0 or step == config["steps"] - 1:
            report.log(f"step {step}: loss {loss.item():.4f}")
    vae.eval()
    with torch.no_grad():
        sample = pool.image_tensor(torch.randperm(len(pool), generator=generator)[:512].numpy()) * 2 - 1
        latents = vae.encode(sample).latent_dist.mean
        recon = vae.decode(latents).sample
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out, safe_serialization=True)
    error = (recon - sample).abs().mean().item() * 127.5
    return {"parameters": sum(p.numel() for p in vae.parameters()), "scaling_factor": scaling,
            "reconstruction_mae_levels": error}
