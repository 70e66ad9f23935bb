"""FaceCLIP's encoder at full size (the release's shapes, random weights): what one conditioning
costs, against its floor, the bare forward of the parts any such encoder must run (both CLIP text
towers and both branches' face ViTs). The difference is the fuser (bi-attention, text self-attention,
deformable attention over the patch grid) and the projections: the target is at most 1.3x the floor.

    python benchmarks/faceclip_latency.py [--repeats 3] [--batch 1] [--device cpu|cuda] [--dtypes fp32 bf16]

Timed side by side (interleaved, medians), so the machine's noise hits both alike. Also printed: the
ratio against a floor with one face ViT (a design sharing one between the branches), and the same
ratio in FLOPs (torch's FlopCounterMode: matrix products and attention): the time ratio an
implementation as efficient as the towers would reach. The release's fuser is about a quarter of its
floor's arithmetic, so the time ratio cannot fall far below the FLOP ratio; their quotient is what
the plain-PyTorch fuser (deformable sampling as a mixing matrix, small matmuls) costs beyond its
arithmetic. At batch 1, fp32 on the CPU is bound by streaming the weights, and its ratio is the
noisier one: run it more than once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import interleaved  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build(device: str, dtype: torch.dtype):
    from faceid_cli.encoders.faceclip import FaceClipEncoder

    # parameters are made on the meta device and given random values in place, in the run's dtype,
    # so the 1.6 B parameters are allocated once
    with torch.device("meta"):
        encoder = FaceClipEncoder()
    encoder = encoder.to_empty(device=device).to(dtype)
    generator = torch.Generator(device=device).manual_seed(0)
    with torch.no_grad():
        for name, tensor in encoder.state_dict().items():
            if tensor.is_floating_point():
                if "norm" in name and name.endswith("weight") or name.endswith("running_var"):
                    tensor.fill_(1.0)
                else:
                    tensor.normal_(0, 0.02, generator=generator)
            else:
                tensor.zero_()
    for branch in encoder.branches:
        length = branch.positional_embedding.shape[0]
        branch.attn_mask = torch.full((length, length), float("-inf"), device=device).triu(1)
    return encoder.eval().requires_grad_(False)


def contenders(encoder, batch: int, device: str, dtype: torch.dtype):
    from faceid_cli.encoders.faceclip import FaceClipTokens

    length = encoder.faceclip_config.context_length
    ids = torch.randint(1, 49406, (batch, length), device=device)
    ids[:, 0], ids[:, 20] = 49406, 49407
    tokens = FaceClipTokens(ids, torch.full((batch,), 4, device=device), torch.full((batch,), 20, device=device))
    crops = torch.rand(batch, 3, 112, 112, device=device, dtype=dtype)

    def encoder_forward():
        with torch.inference_mode():
            faces = encoder.face_features(crops)
            for name, branch in zip(encoder.faceclip_config.branch_names, encoder.branches):
                branch(tokens.input_ids, tokens.id_positions, tokens.eos_positions, faces[f"{name}.identity"],
                       faces[f"{name}.patches"])

    def floor(face_vits: int):
        def run():
            with torch.inference_mode():
                for index, branch in enumerate(encoder.branches):
                    if index < face_vits:
                        branch.encode_face(crops)
                    branch.text_states(tokens.input_ids, tokens.id_positions, tokens.eos_positions, None)
        return run

    def synced(run):
        def timed():
            run()
            if device.startswith("cuda"):
                torch.cuda.synchronize()
        return timed

    return {"encoder (towers + face ViTs + fuser)": synced(encoder_forward),
            "floor: towers + both face ViTs": synced(floor(2)),
            "floor: towers + one face ViT": synced(floor(1))}


def count_flops(run) -> int:
    """Floating-point operations of one call (matrix products, convolutions and attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "bf16"], choices=sorted(DTYPES))
    args = parser.parse_args()
    print(f"FaceCLIP encoder, full size, random weights, batch {args.batch}, {args.device}, "
          f"{torch.get_num_threads()} threads, median of {args.repeats}")
    flops: dict = {}
    for name in args.dtypes:
        encoder = build(args.device, DTYPES[name])
        runs = contenders(encoder, args.batch, args.device, DTYPES[name])
        medians = interleaved(runs, repeats=args.repeats, warmup=1)
        full, floor2, floor1 = medians.values()
        # the arithmetic is the same in every dtype: counted once
        flops = flops or {label: count_flops(run) for label, run in runs.items()}
        print(f"{name}:")
        for label, seconds in medians.items():
            print(f"  {label:<40} {seconds * 1000:10.1f} ms  {flops[label] / 1e9:8.1f} GFLOP")
        flop_full, flop_floor2, _ = flops.values()
        print(f"  encoder / floor (both face ViTs) = {full / floor2:.3f}  (target <= 1.3)")
        print(f"  encoder / floor (one face ViT)   = {full / floor1:.3f}")
        print(f"  in FLOPs: encoder / floor (both face ViTs) = {flop_full / flop_floor2:.3f}; "
              f"time ratio / FLOP ratio = {full / floor2 / (flop_full / flop_floor2):.3f}")
        del encoder, runs
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
