"""One training step of the world's text-to-image UNet (the recipe's shape, random weights, batch
64, gradients into the text states as when its text tower fine-tunes), four ways side by side:
fp32 or bf16 autocast, PyTorch's scaled-dot-product attention or the plain attention the recipe
trains with (``recipes.t2i.training_attention``). Interleaved runs, median ratio.

    python benchmarks/world_t2i_step.py [--batch 64] [--repeats 7]

What it backs: the recipe's precision and attention choice halve a step where the CPU has native
bfloat16 (the README's world section, and ``recipes/t2i.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _timing import interleaved, report  # noqa: E402


def main() -> None:
    from faceid_cli.world.recipes.common import autocast, cpu_bf16_supported
    from faceid_cli.world.recipes.t2i import DEFAULTS, build_unet, training_attention
    from faceid_cli.world.tokenizer import MAX_LENGTH

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--width", type=int, default=128, help="text states' width (the world's tower)")
    parser.add_argument("--latent-channels", type=int, default=16)
    args = parser.parse_args()
    torch.manual_seed(0)
    unet = build_unet(DEFAULTS, args.width, latent_channels=args.latent_channels).train()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4)
    latents = torch.randn(args.batch, args.latent_channels, 16, 16)
    states = torch.randn(args.batch, MAX_LENGTH, args.width, requires_grad=True)
    timesteps = torch.randint(0, 1000, (args.batch,))

    def step(precision: str, plain: bool):
        def run():
            with training_attention(unet, []) if plain else contextlib.nullcontext(), autocast(precision):
                # the pooled text reaches the timestep embedding from these states ("text" embedding)
                out = unet(latents, timesteps, encoder_hidden_states=states).sample.float()
            out.pow(2).mean().backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            states.grad = None
        return run

    contenders = {"fp32, sdpa attention": step("fp32", False), "fp32, plain attention": step("fp32", True),
                  "bf16, sdpa attention": step("bf16", False), "bf16, plain attention (the recipe)": step("bf16", True)}
    medians = interleaved(contenders, args.repeats)
    print(f"CPU with native bfloat16: {cpu_bf16_supported()}; batch {args.batch}")
    report("world T2I training step (forward + backward + AdamW)", medians, "fp32, sdpa attention")


if __name__ == "__main__":
    main()
