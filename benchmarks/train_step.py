"""One `faceid train` step against its floor: the bare diffusers forward + backward of the same
UNet on the same batch (text embeddings precomputed, gradients flowing back to them, as they flow
to the words in training). Interleaved runs, median ratio.

    python benchmarks/train_step.py [--model tiny|world] [--batch 16] [--repeats 7]

Target: faceid step / bare UNet step <= 1.15 on the tiny and world models.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402


def main() -> None:
    from diffusers import DDPMScheduler

    from faceid_cli.conditioning import word_dims_of
    from faceid_cli.models.registry import load_pipeline, resolve_model
    from faceid_cli.train.config import load_config
    from faceid_cli.train.loop import build_encoder_for, encode_latents, step_generator, training_loss

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    pipe = load_pipeline(resolve_model(args.model), torch.device("cpu"), torch.float32)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    overrides = [f"model.base={args.model}", "model.hidden_dim=256"]
    if args.model == "world":
        overrides.append("model.backbone=world:face-vit")
    else:
        overrides.append("model.backbone_config={image_size = 112, patch_size = 16, width = 32, depth = 4, "
                         "num_heads = 2, embedding_dim = 64}")
    encoder = build_encoder_for(load_config(None, overrides), word_dims_of(pipe)).train()
    encoder.backbone.eval()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    with torch.no_grad():
        latents = encode_latents(pipe.vae, torch.rand(args.batch, 3, size, size) * 2 - 1)
    crops = torch.rand(args.batch, 3, encoder.crop_size, encoder.crop_size)
    captions = ["a photo of S*"] * args.batch
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(["a photo of a person"] * args.batch, "cpu", 1, False)

    def faceid_step():
        loss = training_loss(pipe, encoder, scheduler, crops, latents, captions, step_generator(0, 0), 1e-4)[0]
        loss.backward()
        encoder.zero_grad(set_to_none=True)

    def bare_step():
        generator = step_generator(0, 0)
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, 1000, (len(latents),), generator=generator)
        states = embeds.clone().requires_grad_(True)
        prediction = pipe.unet(scheduler.add_noise(latents, noise, timesteps), timesteps,
                               encoder_hidden_states=states).sample
        torch.nn.functional.mse_loss(prediction, noise).backward()

    medians = interleaved({"bare UNet forward+backward": bare_step, "faceid train step": faceid_step},
                          repeats=args.repeats)
    report(f"one training step, {args.model}, batch {args.batch}, {torch.get_num_threads()} threads", medians,
           "bare UNet forward+backward")
    print(f"target: faceid / bare <= 1.15 -> {medians['faceid train step'] / medians['bare UNet forward+backward']:.3f}")


if __name__ == "__main__":
    main()
