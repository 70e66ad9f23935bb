"""What the world T2I can draw of a person it never saw through k free words: the upper bound of
any encoder that writes k words (textual inversion, per person, no encoder).

    python benchmarks/world_inversion.py [--identities 8] [--words 2] [--renders 16] [--steps 400]
        [--lr 5e-3] [--encoder runs/world-m2/encoder ...]

For each of the first N held-out people of `benchmarks/world_encoder.py` (the same reference
render, world prompts, sampling steps and guidance; one seed per prompt here, shared by every row
of this script but not the seeds `world_encoder.py` draws), k word vectors are optimised with the
diffusion loss on ``--renders`` other renders of that person, captioned with their whole context
("a pencil sketch of S* wearing a red hat, ..."), so the words need hold nothing but the person.
Then the prompts are generated through faceid's own `S*` path and scored by the world's recogniser
against the reference. Each ``--encoder`` is scored on the same people and prompts beside it.

If the inverted words keep less than the by-name figure, the T2I (not the encoder) bounds what an
encoder can reach on unseen people.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def invert(pipe, scheduler, latents: torch.Tensor, captions: list[str], num_words: int, steps: int, lr: float,
           seed: int) -> torch.Tensor:
    """k words (k, D) that minimise the diffusion loss on these latents and captions (``S*`` in each)."""
    from faceid_cli.conditioning import encode_prompt_with_identity
    from faceid_cli.train.loop import diffusion_target, unet_conditioning

    table = pipe.text_encoder.get_input_embeddings().weight
    generator = torch.Generator().manual_seed(seed)
    # start at the token table's scale: a random word of an ordinary token's norm
    words = torch.randn(num_words, table.shape[1], generator=generator) * table.norm(dim=-1).mean() / table.shape[1] ** 0.5
    words = torch.nn.Parameter(words)
    optimizer = torch.optim.Adam([words], lr=lr)
    for _ in range(steps):
        noise = torch.randn(latents.shape, generator=generator)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=generator)
        noisy = scheduler.add_noise(latents, noise, timesteps)
        embeds = encode_prompt_with_identity(pipe, captions, [words[None].expand(len(latents), -1, -1)], "S*")
        prediction = pipe.unet(noisy, timesteps, **unet_conditioning(pipe, embeds.prompt_embeds,
                                                                      embeds.pooled_prompt_embeds)).sample
        loss = torch.nn.functional.mse_loss(prediction, diffusion_target(scheduler, latents, noise, timesteps))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return words.detach()


def main() -> None:
    from diffusers import DDPMScheduler

    from faceid_cli.evaluate.metrics import bootstrap_mean, face_similarity, reference_embedding
    from faceid_cli.evaluate.prompts import load_prompts
    from faceid_cli.faces import load_analyzer
    from faceid_cli.identity import Identity
    from faceid_cli.images import load_image
    from faceid_cli.pipeline_faceid import FaceIDPipeline
    from faceid_cli.train.loop import encode_latents
    from faceid_cli.world.contexts import caption
    from faceid_cli.world.people import population_seeds
    from faceid_cli.world.quality import images_to_tensor
    from faceid_cli.world.render import render_sample
    from world_encoder import render_references

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--identities", type=int, default=8, help="held-out people (the benchmark's first N)")
    parser.add_argument("--words", type=int, default=2, help="k, the words inverted")
    parser.add_argument("--renders", type=int, default=16, help="renders of each person to invert from")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--encoder", action="append", default=[], help="encoder checkpoint(s) to score beside it")
    parser.add_argument("--prompts", default="world")
    parser.add_argument("--sample-steps", type=int, default=30)
    parser.add_argument("--guidance", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    prompts = load_prompts(args.prompts)
    analyzer = load_analyzer("world")
    base = FaceIDPipeline.from_model("world", method="m2", device="cpu", analyzer=analyzer)
    pipe = base.pipe
    pipe.unet.requires_grad_(False)
    pipe.text_encoder.requires_grad_(False)
    scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    encoders = {f"m2@{e}": FaceIDPipeline.from_model("world", method="m2", encoder=e, device="cpu", analyzer=analyzer)
                for e in args.encoder}
    references = render_references(Path(tempfile.mkdtemp(prefix="faceid-world-inversion-")), "held_out",
                                   args.identities, args.seed)
    scores: dict[str, list[float]] = {"inverted words": [], **{label: [] for label in encoders}}

    def generate(pipeline, identity) -> list[float]:
        images = [pipeline(identity, prompt, seeds=[args.seed + j], steps=args.sample_steps, guidance=args.guidance)[0]
                  for j, prompt in enumerate(prompts)]
        return [s for s in (face_similarity(analyzer, image, target) for image in images) if s is not None]

    for index, (person, reference_path) in enumerate(zip(population_seeds("held_out", args.identities), references)):
        reference = load_image(reference_path)
        target = reference_embedding(analyzer, reference)
        # renders unlike the benchmark's (its reference uses seed + index, its ceiling seed + 1000 + j)
        renders = [render_sample(person, 50_000 + r) for r in range(args.renders)]
        with torch.no_grad():
            latents = encode_latents(pipe.vae, images_to_tensor([r.image for r in renders]) * 2 - 1)
        words = invert(pipe, scheduler, latents, [caption(r.context, "S*") for r in renders], args.words,
                       args.steps, args.lr, args.seed + index)
        found = generate(base, Identity(words=[words], metadata={"method": "m2"}))
        scores["inverted words"] += found
        line = f"person {index}: inverted {np.mean(found):.3f} (word norm {words.norm(dim=-1).mean():.2f})"
        for label, pipeline in encoders.items():
            encoded = generate(pipeline, pipeline.identity_from(reference_path))
            scores[label] += encoded
            line += f", {label} {np.mean(encoded):.3f}"
        print(f"{line} ({time.perf_counter() - started:.0f} s)", flush=True)
    print(f"world, {args.identities} held-out people x {len(prompts)} prompts, k = {args.words}, "
          f"{args.renders} renders x {args.steps} steps each ({time.perf_counter() - started:.0f} s)")
    for label, values in scores.items():
        mean, low, high = bootstrap_mean(values)
        print(f"{label:<28} face similarity {mean:.3f} [{low:.3f}, {high:.3f}] over {len(values)} faces")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
