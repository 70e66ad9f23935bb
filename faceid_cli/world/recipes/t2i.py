"""The world's text-to-image models, pre-trained from scratch on renders of the named celebrities.

``world`` is a diffusers ``StableDiffusionPipeline`` and ``world-xl`` a
``StableDiffusionXLPipeline`` (two text towers, pooled text and size conditioning): a UNet on the
world VAE's 16x16 latents, CLIP text towers, a DDIM scheduler. Prompts are encoded during
training by the pipeline's own ``encode_prompt``, so training and generation cannot read prompts
differently.

The text towers come pre-trained (contrastively, :mod:`.clip`) and are fine-tuned with the UNet
(``text_lr_scale``). Kept frozen, they drew every celebrity alike: measured on the first shipped
world, the towers' states at the name's tokens had a cosine of 0.97 between different names (0.95
between different backgrounds over the whole prompt), images of different names at one seed
differed by 0.5% of the pixel range, and identity top-1 was at the floor (0.005). Their throwaway
image side saw 32 px renders, where a face's identity hardly shows, so nothing taught them names.
Real text encoders know celebrities from web-scale image-text data; fine-tuning is how the world
gives its towers that knowledge. Glasses, also fine detail at 32 px, were at chance (0.31) for the
same reason.

Besides the named celebrities, the model can see a crowd of unnamed people (``crowd`` in the build's
recipe, off there: measured, it cost the named people more than it gave unseen ones). Each crowd person is written in captions as ``S*`` and drawn through two words of a table
learnt with the model and thrown away after it, through the same ``S*`` path that ``generate`` and
``train`` use: the model learns to draw many faces from word embeddings, not 100, as a real T2I
knows faces far beyond the names it can say. Measured before the crowd: the best two words that
textual inversion found for an unseen person drew it at 0.83 of the by-name similarity.

What makes a tiny model obey context words (see the closing note of the world's issue for the
measurements): captions in one fixed grammar with absence said by words of its own; a pooled-text
path into the timestep embedding (``addition_embed_type="text"`` for SD; SDXL's own
``text_time``); Min-SNR loss weighting; EMA weights; 10% empty captions for guidance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ...conditioning import DEFAULT_IDENTITY_TOKEN, encode_plain_prompts, encode_prompt_with_identity
from ...train.loss_weights import face_loss_weights
from ..contexts import NEUTRAL_SUBJECT
from .clip import sample_captions
from .common import Reporter, autocast, drop_source_paths, lr_at, resolved_precision, seed_everything, set_lr, update

DEFAULTS = {
    "steps": 3000, "batch_size": 64, "lr": 8e-4, "ema_decay": 0.999, "min_snr_gamma": 5.0,
    "empty_caption_probability": 0.1, "person_caption_probability": 0.1, "mention_probability": 0.85,
    "full_caption_probability": 0.5,
    # the text towers' learning rate as a fraction of the UNet's (0 keeps them frozen)
    "text_lr_scale": 0.5,
    # extra loss weight on the latent cells of the face box: identity lives in a sixth of the picture,
    # while background, shirt and hat, which every caption names, fill the rest (the world's build
    # uses 4: build.RECIPE says what it measured)
    "face_loss_weight": 2.0,
    # the crowd's words: as many per person as the world's encoder writes (k), learnt at this
    # multiple of the UNet's learning rate (each person is in few batches; textual inversion on
    # this model worked at 5e-3)
    "crowd_words": 2, "crowd_lr_scale": 5.0,
    # Cross-attention at the 8x8 latents (1/8 of the image) and in the 4x4 middle, with width rather
    # than attention at 16x16: measured with the same recipe (2400 steps), 64/96/96 channels drew the
    # named person 0.19 top-1 (and glasses 0.57) against 0.085 (0.41) for 32/64/96 with 16x16
    # cross-attention, at the same training time (1554 s against 1612 s); a build of 3000 steps
    # measured 0.35 and 0.68, 6000 steps in bf16 0.675 and 0.87 (face_loss_weight 4 then lifted it:
    # build.RECIPE). A face is a sixth of the picture: its detail is drawn at 16x16, where width in
    # convolution bought more than attention to the text.
    "unet": {"block_out_channels": [64, 96, 96],
             "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "layers_per_block": 1,
             "attention_head_dim": [4, 4, 4], "norm_num_groups": 16},
    # The cosine schedule (made for 32-64 px images) ends at zero signal, where a noise prediction
    # says nothing about the picture: measured, eps-prediction's x0 estimate at t=900 was 3.3 (in
    # units of the data's variance) and samples were colour noise at a training loss of 0.1.
    # v-prediction is well posed at every noise level (Salimans & Ho, 2022), and "trailing"
    # timesteps start sampling from pure noise, where training ended.
    "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction",
    # forward passes in bfloat16 where the CPU computes it natively (common.autocast): a training
    # step of this UNet took 0.34 s against 0.51-0.60 s in fp32 (batch 64, 2 cores, AVX512-BF16)
    "precision": "auto",
}


def scheduler_config(config: dict) -> dict:
    return {"num_train_timesteps": 1000, "beta_schedule": config["beta_schedule"],
            "beta_start": config.get("beta_start", 0.0001), "beta_end": config.get("beta_end", 0.02),
            "prediction_type": config["prediction_type"], "clip_sample": False, "set_alpha_to_one": False,
            "steps_offset": 1, "timestep_spacing": config.get("timestep_spacing", "trailing")}


#: the scheduler settings a training-time DDPMScheduler takes (the rest are the sampler's)
DDPM_KEYS = ("num_train_timesteps", "beta_schedule", "beta_start", "beta_end", "prediction_type", "clip_sample")


def build_unet(config: dict, cross_attention_dim: int, xl_pooled_dim: int | None = None, latent_channels: int = 4):
    from diffusers import UNet2DConditionModel

    unet = dict(config["unet"])
    extra = {}
    if xl_pooled_dim is None:
        extra.update(addition_embed_type="text", addition_embed_type_num_heads=4)
    else:
        time_dim = 8
        extra.update(addition_embed_type="text_time", addition_time_embed_dim=time_dim,
                     projection_class_embeddings_input_dim=6 * time_dim + xl_pooled_dim)
    return UNet2DConditionModel(
        sample_size=16, in_channels=latent_channels, out_channels=latent_channels,
        cross_attention_dim=cross_attention_dim,
        block_out_channels=tuple(unet.pop("block_out_channels")), down_block_types=tuple(unet.pop("down_block_types")),
        up_block_types=tuple(unet.pop("up_block_types")), **unet, **extra,
    )


def build_pipeline(unet, vae, towers: list, tokenizer, config: dict):
    from diffusers import DDIMScheduler, StableDiffusionPipeline, StableDiffusionXLPipeline

    scheduler = DDIMScheduler(**scheduler_config(config))
    if len(towers) == 1:
        return StableDiffusionPipeline(vae=vae, text_encoder=towers[0], tokenizer=tokenizer, unet=unet,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    return StableDiffusionXLPipeline(vae=vae, text_encoder=towers[0], text_encoder_2=towers[1], tokenizer=tokenizer,
                                     tokenizer_2=tokenizer, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=True)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    """Scaled latents (B, C, 16, 16) of images (B, 3, 64, 64) in [0, 1]."""
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size] * 2 - 1
        out.append(vae.encode(chunk).latents * vae.config.scaling_factor)
    return torch.cat(out)


def prompt_conditioning(pipe, captions: list[str], words: list[torch.Tensor] | None = None) -> dict:
    """What the pipeline gives its UNet for ``captions``: SD's text embeddings, or SDXL's
    embeddings, pooled text and size ids (empty captions → zeros, as ``force_zeros_for_empty_prompt``).
    ``words`` (one (B, k, D) tensor per text tower), if given, stand in for ``S*`` in each caption
    (faceid's own identity path; captions without ``S*`` encode as the pipeline encodes them).
    Differentiable: gradients reach text towers and words that train."""
    device = pipe.unet.device
    xl = getattr(pipe, "text_encoder_2", None) is not None
    if words is not None:
        encoded = encode_prompt_with_identity(pipe, captions, words)
    else:
        encoded = encode_plain_prompts(pipe, captions)
    embeds, pooled = encoded.prompt_embeds, encoded.pooled_prompt_embeds
    if not xl:
        return {"encoder_hidden_states": embeds}
    keep = torch.tensor([bool(c) for c in captions], device=device)
    embeds = embeds * keep[:, None, None].to(embeds.dtype)
    pooled = pooled * keep[:, None].to(pooled.dtype)
    size = 4 * pipe.unet.config.sample_size
    time_ids = pipe._get_add_time_ids((size, size), (0, 0), (size, size), dtype=embeds.dtype,
                                      text_encoder_projection_dim=pipe.text_encoder_2.config.projection_dim)
    return {"encoder_hidden_states": embeds,
            "added_cond_kwargs": {"text_embeds": pooled, "time_ids": time_ids.repeat(len(captions), 1)}}


def crowd_words(towers: list, count: int, words: int, generator: torch.Generator) -> nn.ParameterList:
    """A (count, words, D) table per text tower, drawn like the tower's own token embeddings
    (their mean and per-dimension spread), so the crowd's words start where words live."""
    tables = []
    for tower in towers:
        tokens = tower.get_input_embeddings().weight.detach().float()
        noise = torch.randn(count, words, tokens.shape[1], generator=generator)
        tables.append(nn.Parameter(tokens.mean(0) + noise * tokens.std(0)))
    return nn.ParameterList(tables)


@torch.no_grad()
def warm_start(unet, folder: Path) -> int:
    """Start a UNet from another's weights (world-xl from world): every tensor of the same name and
    shape is copied; cross-attention keys and values, which read wider text embeddings here, get
    the other's weights for the first text tower's columns and zeros for the rest. Returns how many
    tensors were copied."""
    from safetensors.torch import load_file

    source = load_file(str(Path(folder) / "diffusion_pytorch_model.safetensors"))
    copied = 0
    for name, tensor in unet.state_dict().items():
        if name not in source:
            continue
        value = source[name].to(tensor.dtype)
        if value.shape == tensor.shape:
            tensor.copy_(value)
        elif name.endswith(("attn2.to_k.weight", "attn2.to_v.weight")) and value.shape[0] == tensor.shape[0]:
            tensor.zero_()
            tensor[:, : value.shape[1]] = value
        else:
            continue
        copied += 1
    return copied


def training_attention(unet, towers: list):
    """Plain-matrix attention in the UNet and text towers while training (:mod:`faceid_cli.models.attention`
    has the measurements), the default again afterwards."""
    from ...models.attention import attention_kind

    return attention_kind("eager", [unet], towers)


def min_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al., 2023): min(SNR, γ) / SNR for epsilon prediction,
    min(SNR, γ) / (SNR + 1) for v-prediction."""
    alphas = scheduler.alphas_cumprod[timesteps]
    snr = alphas / (1 - alphas)
    if scheduler.config.prediction_type == "v_prediction":
        return torch.clamp(snr, max=gamma) / (snr + 1)
    return torch.clamp(snr, max=gamma) / snr


def training_target(scheduler, clean: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict: the noise, or the velocity for v-prediction models."""
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(clean, noise, timesteps)
    return noise


def train(latents: torch.Tensor, labels: np.ndarray, identities: np.ndarray, names: dict[int, str], vae,
          towers: list, tokenizer, out: Path, config: dict, seed: int, report: Reporter,
          checkpoint: Callable[[int, object], None] | None = None, every: int = 0, init_from: Path | None = None,
          face_boxes: np.ndarray | None = None) -> dict:
    """Train a UNet on ``latents`` of the celebrities' renders and save the whole pipeline.

    ``face_boxes`` (N, 4) in image pixels, if given, weight the loss toward the face
    (``face_loss_weight``).

    ``names``: identity seed → celebrity name; any other identity is of the unnamed crowd, written
    ``S*`` and drawn through words learnt here (``crowd_words``) and not saved. ``towers``: one
    (SD) or two (SDXL) pre-trained text encoders, fine-tuned here at ``text_lr_scale`` times the UNet's learning rate.
    ``checkpoint(step, pipe)``, if given, is called every ``every`` steps with the pipeline holding
    the EMA weights (for learning curves). ``init_from``: a UNet folder to start
    from (:func:`warm_start`).
    """
    from diffusers import DDPMScheduler
    from diffusers.training_utils import EMAModel

    config = {**DEFAULTS, **config}
    generator = seed_everything(seed)
    rng = np.random.default_rng(seed)
    xl = len(towers) == 2
    width = sum(t.config.hidden_size for t in towers)
    unet = build_unet(config, width, towers[1].config.projection_dim if xl else None, vae.config.latent_channels)
    copied = warm_start(unet, init_from) if init_from is not None else 0
    vae.requires_grad_(False).eval()
    text_trains = config["text_lr_scale"] > 0
    for tower in towers:
        tower.requires_grad_(text_trains).train(text_trains)
    pipe = build_pipeline(unet, vae, towers, tokenizer, config)
    noise_scheduler = DDPMScheduler(**{k: v for k, v in scheduler_config(config).items()
                                       if k in DDPM_KEYS})
    trained = nn.ModuleList([unet, *towers]) if text_trains else nn.ModuleList([unet])
    ema = EMAModel(trained.parameters(), decay=config["ema_decay"], use_ema_warmup=True, power=0.75)
    groups = [{"params": list(unet.parameters())}]
    if text_trains:
        groups.append({"params": [p for t in towers for p in t.parameters()], "lr_scale": config["text_lr_scale"]})
    crowd_seeds = sorted(set(np.unique(identities).tolist()) - set(names))
    crowd_row = {seed_: row for row, seed_ in enumerate(crowd_seeds)}
    crowd = crowd_words(towers, len(crowd_seeds), config["crowd_words"], generator) if crowd_seeds else None
    if crowd is not None:
        groups.append({"params": list(crowd.parameters()), "lr_scale": config["crowd_lr_scale"], "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=config["lr"], weight_decay=0.01)
    report.task(f"train {'world-xl' if xl else 'world'} text-to-image", config["steps"])
    unet.train()
    count = len(latents)
    with training_attention(unet, towers):
        for step in range(config["steps"]):
            set_lr(optimizer, lr_at(step, config["steps"], config["lr"], warmup=200))
            index = torch.randint(0, count, (config["batch_size"],), generator=generator).numpy()
            subjects = [NEUTRAL_SUBJECT if rng.uniform() < config["person_caption_probability"]
                        else names.get(int(i), DEFAULT_IDENTITY_TOKEN) for i in identities[index]]
            captions, _ = sample_captions(labels[index], subjects, rng, config["mention_probability"],
                                          config["full_caption_probability"])
            captions = ["" if rng.uniform() < config["empty_caption_probability"] else c for c in captions]
            clean = latents[index]
            noise = torch.randn(clean.shape, generator=generator)
            timesteps = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(index),), generator=generator)
            noisy = noise_scheduler.add_noise(clean, noise, timesteps)
            with autocast(config["precision"]):
                words = None
                if crowd is not None:
                    rows = torch.tensor([crowd_row.get(int(i), 0) for i in identities[index]])
                    words = [table[rows] for table in crowd]
                condition = prompt_conditioning(pipe, captions, words)
                prediction = unet(noisy, timesteps, **condition).sample.float()
            target = training_target(noise_scheduler, clean, noise, timesteps)
            squared = (prediction - target).pow(2)
            if face_boxes is not None and config["face_loss_weight"]:
                # the world VAE's latents are a quarter of the picture's side
                weights = face_loss_weights(torch.from_numpy(face_boxes[index]), clean.shape[-1], 4 * clean.shape[-1],
                                            config["face_loss_weight"])
                squared = squared * weights / weights.mean(dim=(2, 3), keepdim=True)
            per_sample = squared.mean(dim=(1, 2, 3))
            loss = (per_sample * min_snr_weights(noise_scheduler, timesteps, config["min_snr_gamma"])).mean()
            update(optimizer, loss, step, config["steps"], report, clip=1.0)
            ema.step(trained.parameters())
            if checkpoint is not None and every and (step + 1) % every == 0 and step + 1 < config["steps"]:
                ema.store(trained.parameters())
                ema.copy_to(trained.parameters())
                trained.eval()
                checkpoint(step + 1, pipe)
                ema.restore(trained.parameters())
                trained.train()
    ema.copy_to(trained.parameters())
    for module in (unet, *towers):
        module.requires_grad_(False).eval()
    # shipped in fp16 (half the bytes); loading asks for the dtype it runs in
    pipe.to(dtype=torch.float16)
    pipe.save_pretrained(out, safe_serialization=True)
    drop_source_paths(out)
    pipe.to(dtype=torch.float32)
    return {"parameters": sum(p.numel() for p in unet.parameters()), "warm_started_tensors": copied,
            "crowd_people": len(crowd_seeds), "crowd_images": int(np.isin(identities, crowd_seeds).sum()),
            "precision": resolved_precision(config["precision"])}
