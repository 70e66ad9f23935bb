"""The world's VAE: a fixed linear encoder, a learned decoder.

A compressive autoencoder small enough for two CPU cores blurs away what identity lives in (a
16x16x4 KL autoencoder trained for 6 minutes reconstructed the world's faces at recogniser cosine
0.61, one with 16 channels at 0.70). So the world's encoder is not learned but *set*: diffusers'
``AutoencoderTiny`` with no blocks between its convolutions is linear, and its weights are chosen
to cut the picture into 4x4 patches (64x64x3 → 16x16x48) and keep each patch's first principal
components, whitened (16 of 48 keep 98% of the variance of the world's pictures; the first three
are the patch's mean colour, so the latent is a 16x16 picture plus detail channels). The decoder
(the usual TAESD blocks) is trained to put the patches back, also from slightly noisy latents, as
a diffusion model's outputs are. Two things measured on the way:

- keeping all 48 numbers of a patch does not work: a UNet whose first level is 32 wide cannot pass
  48 channels through, and never learns to denoise them (its loss at high noise stayed at 0.5 where
  4 or 16 channels reach 0.02);
- without whitening, the detail components have a hundredth of the mean colour's variance, so a
  diffusion model's ordinary errors, the same size in every channel, swamp them: samples were
  colour noise at a training loss of 0.1. Whitened, every channel's error is relative to its own
  scale, as in a KL autoencoder's latent space.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .common import Reporter, WorldData, batches, lr_at, seed_everything, set_lr, update

PATCH = 4
#: the whitened components (unit variance) are multiplied by this, so the decoder's tanh clamp
#: (3·tanh(z/3)) is the identity on them to 0.1% up to four standard deviations
ENCODER_GAIN = 0.05
DEFAULTS = {"identities": 2000, "per_identity": 16, "steps": 1500, "batch_size": 64, "lr": 2e-3,
            "face_weight": 4.0, "decoder_channels": 32, "decoder_blocks": [1, 1, 0], "crop": 32,
            "latent_noise": 0.1, "latent_channels": 16, "pca_images": 2000}


def build_vae(config: dict, mean: torch.Tensor | None = None, components: torch.Tensor | None = None):
    """An ``AutoencoderTiny`` whose encoder projects 4x4 patches on ``components`` (k, 48) after
    subtracting ``mean`` (48,) (default: the first k pixels of a patch, about 0.5), random decoder."""
    from diffusers import AutoencoderTiny

    patch = 3 * PATCH * PATCH
    latent_channels = config["latent_channels"]
    levels = len(config["decoder_blocks"])
    vae = AutoencoderTiny(
        in_channels=3, out_channels=3, encoder_block_out_channels=(patch,) * levels,
        decoder_block_out_channels=(config["decoder_channels"],) * levels, num_encoder_blocks=(0,) * levels,
        num_decoder_blocks=tuple(config["decoder_blocks"]), latent_channels=latent_channels, act_fn="relu",
        upsample_fn="nearest", upsampling_scaling_factor=2, scaling_factor=1.0, force_upcast=False,
    )
    if components is None:
        components = torch.eye(patch)[:latent_channels]
        mean = torch.full((patch,), 0.5)
    set_patch_encoder(vae.encoder, mean, components)
    vae.encoder.requires_grad_(False)
    return vae


@torch.no_grad()
def set_patch_encoder(encoder, mean: torch.Tensor, components: torch.Tensor) -> None:
    """Weights that make ``EncoderTiny`` (conv → stride-2 conv → stride-2 conv → conv, nothing in
    between) compute GAIN * components @ (patch - mean) at every 4x4 patch, where the patch vector
    is ordered by :func:`unshuffle`: patch[c*16 + a*4 + b] = x[c, 4i + 2 b_y + a_y, 4j + 2 b_x + a_x],
    a = (a_y, a_x) and b = (b_y, b_x) being the offsets the two stride-2 convs pick."""
    convs = [layer for layer in encoder.layers if isinstance(layer, nn.Conv2d)]
    if len(convs) != 4:
        raise ValueError("the patch encoder needs three levels and no blocks")
    first, down1, down2, last = convs
    for conv in convs:
        conv.weight.zero_()
        if conv.bias is not None:
            conv.bias.zero_()
    per_colour = PATCH * PATCH
    for c in range(3):
        for k in range(per_colour):
            first.weight[c * per_colour + k, c, 1, 1] = 1.0  # 16 copies of each colour
        for a in range(4):
            ay, ax = divmod(a, 2)
            for b in range(4):
                by, bx = divmod(b, 2)
                channel = c * per_colour + a * 4 + b
                # with padding 1, tap 1 + d of a stride-2 conv reads input row 2i + d
                down1.weight[channel, c * per_colour, 1 + ay, 1 + ax] = 1.0
                down2.weight[channel, channel, 1 + by, 1 + bx] = 1.0
    last.weight[:, :, 1, 1] = ENCODER_GAIN * components.to(last.weight.dtype)
    last.bias[:] = -ENCODER_GAIN * (components.double() @ mean.double()).to(last.bias.dtype)


def patch_pca(images: torch.Tensor, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (48,) and the first ``count`` principal components (count, 48) of the 4x4 patches of
    ``images`` (B, 3, 64, 64) in [0, 1], whitened (each divided by its standard deviation), signs
    fixed so each component's largest weight is positive."""
    patches = unshuffle_patches(images).permute(0, 2, 3, 1).reshape(-1, 3 * PATCH * PATCH).double()
    mean = patches.mean(0)
    values, vectors = torch.linalg.eigh(torch.cov((patches - mean).T))
    values, components = values.flip(0)[:count], vectors.flip(1).T[:count]
    signs = torch.sign(components.gather(1, components.abs().argmax(1, keepdim=True)))
    return mean.float(), (components * signs / values.clamp(min=1e-12).sqrt()[:, None]).float()


def unshuffle_patches(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, 64, 64) → (B, 48, 16, 16): every 4x4 patch as a vector, in the encoder's order."""
    batch, colours, height, width = images.shape
    x = images.reshape(batch, colours, height // PATCH, 2, 2, width // PATCH, 2, 2)  # (…, i, by, ay, j, bx, ax)
    x = x.permute(0, 1, 4, 7, 3, 6, 2, 5)  # (B, c, ay, ax, by, bx, i, j)
    return x.reshape(batch, colours * PATCH * PATCH, height // PATCH, width // PATCH)


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
    pool = data.population_pool("recogniser", config["identities"], config["per_identity"])
    sample = torch.randperm(len(pool), generator=generator)[: config["pca_images"]].numpy()
    mean, components = patch_pca(pool.image_tensor(sample), config["latent_channels"])
    vae = build_vae(config, mean, components)
    optimizer = torch.optim.AdamW(vae.decoder.parameters(), lr=config["lr"], weight_decay=0.0)
    stream = batches(len(pool), config["batch_size"], generator)
    report.task("train VAE decoder", config["steps"])
    vae.decoder.train()
    crop = config["crop"]
    for step in range(config["steps"]):
        set_lr(optimizer, lr_at(step, config["steps"], config["lr"]))
        index = next(stream).numpy()
        images = pool.image_tensor(index)
        weights = face_weights(torch.from_numpy(pool.bboxes[index]), images.shape[-1], config["face_weight"])
        # one crop for the batch, on the patch grid (the decoder is convolutional)
        top, left = (int(v) * PATCH for v in torch.randint(0, (images.shape[-1] - crop) // PATCH + 1, (2,),
                                                           generator=generator))
        images = images[..., top:top + crop, left:left + crop]
        weights = weights[..., top:top + crop, left:left + crop]
        with torch.no_grad():
            latents = vae.encode(images * 2 - 1).latents
            spread = latents.std() * config["latent_noise"]
            latents = latents + torch.randn(latents.shape, generator=generator) * spread * torch.rand(
                len(index), 1, 1, 1, generator=generator)
        recon = vae.decode(latents).sample
        error = recon - (images * 2 - 1)
        loss = (weights * (error.abs() + error.pow(2))).mean()
        update(optimizer, loss, step, config["steps"], report, clip=1.0, every=250)
    vae.eval()
    with torch.no_grad():
        sample = pool.image_tensor(torch.randperm(len(pool), generator=generator)[:512].numpy())
        latents = vae.encode(sample * 2 - 1).latents
        recon = (vae.decode(latents).sample + 1) / 2
    scaling = float(1.0 / latents.std())
    vae.register_to_config(scaling_factor=scaling)
    vae.save_pretrained(out, safe_serialization=True)
    error = (recon.clamp(0, 1) - sample).abs().mean().item() * 255
    return {"parameters": sum(p.numel() for p in vae.parameters()), "scaling_factor": scaling,
            "reconstruction_mae_levels": error}
