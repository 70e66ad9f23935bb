"""One `faceid train` step against its floor: the bare diffusers forward + backward of the same
UNet on the same batch (text embeddings precomputed, gradients flowing back to them, as they flow
to the words in training). Interleaved runs, median ratio. The faceid step is the steady state of
a run with a frozen backbone: its features of each face are cached (``data.cache_features``, the
default), as after the first epoch; the step that still runs the backbone is shown beside it.

    python benchmarks/train_step.py [--model tiny|world|FOLDER] [--batch 16] [--repeats 7]
        [--device cpu|cuda] [--dtype fp32|bf16|fp16] [--config configs/sd21-base.toml]

``--config`` takes the face backbone's shape and the heads' width from a training config (random
weights), e.g. the SD2.1-base run's ViT-L on a random SD2.1-base folder made by
``benchmarks/real_shapes.py --only-build``. ``--dtype`` runs both contenders under the same
autocast, as ``train.mixed_precision`` does. On CUDA it also prints each contender's peak memory
per sample.

Target: faceid step / bare UNet step <= 1.15 on the tiny and world models.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from contextlib import nullcontext
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402

DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


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
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    parser.add_argument("--config", type=Path, default=None,
                        help="take model.backbone_config and model.hidden_dim from this training config")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)
    pipe = load_pipeline(resolve_model(args.model), device, torch.float32)
    for module in (pipe.unet, pipe.vae, pipe.text_encoder):
        module.requires_grad_(False)
    overrides = [f"model.base={args.model}" if args.model in ("tiny", "world") else f'model.base="{args.model}"']
    if args.config is not None:
        shipped = tomllib.loads(args.config.read_text())["model"]
        shape = ", ".join(f"{k} = {v}" for k, v in shipped["backbone_config"].items())
        overrides += [f"model.backbone_config={{{shape}}}", f"model.hidden_dim={shipped['hidden_dim']}",
                      f"model.num_words={shipped['num_words']}"]
    elif args.model == "world":
        overrides += ["model.backbone=world:face-vit", "model.hidden_dim=256"]
    else:
        overrides += ["model.hidden_dim=256",
                      "model.backbone_config={image_size = 112, patch_size = 16, width = 32, depth = 4, "
                      "num_heads = 2, embedding_dim = 64}"]
    encoder = build_encoder_for(load_config(None, overrides), word_dims_of(pipe)).to(device).train()
    encoder.backbone.eval()
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    size = pipe.unet.config.sample_size * pipe.vae_scale_factor
    with torch.no_grad():
        latents = torch.cat([encode_latents(pipe.vae, torch.rand(1, 3, size, size, device=device) * 2 - 1)
                             for _ in range(args.batch)])
    crops = torch.rand(args.batch, 3, encoder.crop_size, encoder.crop_size, device=device)
    captions = ["a photo of S*"] * args.batch
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(["a photo of a person"] * args.batch, device, 1, False)
    dtype = DTYPES[args.dtype]
    autocast = (lambda: torch.autocast(device.type, dtype=dtype)) if dtype else nullcontext
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    with torch.no_grad(), autocast():
        features = torch.cat([encoder.features(crop[None]) for crop in crops])

    def faceid_step(cached=True):
        with autocast():
            loss = training_loss(pipe, encoder, scheduler, crops, latents, captions, step_generator(0, 0), 1e-4,
                                 features=features if cached else None)[0]
        loss.backward()
        encoder.zero_grad(set_to_none=True)
        sync()

    def bare_step():
        generator = step_generator(0, 0)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        timesteps = torch.randint(0, 1000, (len(latents),), generator=generator).to(device)
        states = embeds.clone().requires_grad_(True)
        with autocast():
            prediction = pipe.unet(scheduler.add_noise(latents, noise, timesteps), timesteps,
                                   encoder_hidden_states=states).sample
            loss = torch.nn.functional.mse_loss(prediction.float(), noise.float())
        loss.backward()
        sync()

    contenders = {"bare UNet forward+backward": bare_step, "faceid train step": faceid_step,
                  "faceid step, backbone run (first epoch)": lambda: faceid_step(cached=False)}
    medians = interleaved(contenders, repeats=args.repeats)
    threads = f"{torch.get_num_threads()} threads" if device.type == "cpu" else torch.cuda.get_device_name(device)
    report(f"one training step, {args.model}, batch {args.batch} at {size} px, {args.dtype}, {threads}", medians,
           "bare UNet forward+backward")
    print(f"target: faceid / bare <= 1.15 -> {medians['faceid train step'] / medians['bare UNet forward+backward']:.3f}")
    if device.type == "cuda":
        for name, run in contenders.items():
            torch.cuda.reset_peak_memory_stats(device)
            resident = torch.cuda.memory_allocated(device)  # the frozen weights and the batch
            run()
            peak = torch.cuda.max_memory_allocated(device)
            print(f"  peak GPU memory, {name}: {peak / 2**30:.2f} GiB in all, "
                  f"{(peak - resident) / 2**30 / args.batch:.3f} GiB per sample above the resident weights")


if __name__ == "__main__":
    main()
