"""The paper's training config on real-size shapes: SD2.1-base (its public component configs, in
``benchmarks/real_configs/sd21-base``) with random weights, and a ViT-L face backbone (random, in
the arcface_torch layout), trained by ``faceid train configs/sd21-base.toml`` as shipped, with only
what must change on a CPU overridden: the data and backbone paths, the resolution, the batch and
the step count.

    python benchmarks/real_shapes.py [--resolution 256] [--steps 1] [--work DIR]
        [--device cpu|cuda] [--batch 1] [--face-backend dlib|world] [--photos DIR] [--only-build]

Prints the shapes that meet (the words, the prompt embeddings, the latents), the steps' speed and
the peak memory (the process's on a CPU; the GPU's, from metrics.jsonl, on CUDA). ``--face-backend
world`` with ``--photos`` of world people needs no dlib (a GPU machine may lack it). No weights are downloaded: the tokenizer is faceid's byte-level CLIP
tokenizer (the real vocabulary is not on this machine; ids fit the real embedding table).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "benchmarks" / "real_configs" / "sd21-base"
FACES = ROOT / "tests" / "data" / "faces"


def build_random_sd21(folder: Path) -> None:
    """A diffusers folder of SD2.1-base from its component configs, random weights, fp16 on disk."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from faceid_cli.models.tiny import build_tiny_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel.from_config(json.loads((CONFIGS / "unet" / "config.json").read_text()))
    vae = AutoencoderKL.from_config(json.loads((CONFIGS / "vae" / "config.json").read_text()))
    text_encoder = CLIPTextModel(CLIPTextConfig(**json.loads((CONFIGS / "text_encoder" / "config.json").read_text())))
    scheduler = DDIMScheduler.from_config(json.loads((CONFIGS / "scheduler" / "scheduler_config.json").read_text()))
    pipe = StableDiffusionPipeline(vae=vae, text_encoder=text_encoder, tokenizer=build_tiny_tokenizer(), unet=unet,
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.to(dtype=torch.float16).save_pretrained(folder, safe_serialization=True)
    counts = {name: sum(p.numel() for p in module.parameters()) for name, module in
              (("unet", unet), ("vae", vae), ("text_encoder", text_encoder))}
    print("SD2.1-base, random weights:", ", ".join(f"{k} {v / 1e6:.0f} M" for k, v in counts.items()))


def build_random_backbone(path: Path, config: dict) -> None:
    import torch
    from safetensors.torch import save_file

    from faceid_cli.encoders.face_vit import FaceViT, FaceViTConfig

    torch.manual_seed(1)
    vit = FaceViT(FaceViTConfig(**config))
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(path))
    print(f"face ViT (arcface_torch layout), random: {sum(p.numel() for p in vit.parameters()) / 1e6:.0f} M")


def main() -> None:
    import tomllib

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", default="1",
                        help="N: batch = micro-batch = N; 'shipped': the config's own (64 by accumulating 8s)")
    parser.add_argument("--face-backend", default="dlib")
    parser.add_argument("--photos", type=Path, default=None, help="face photos (default: two of tests/data/faces)")
    parser.add_argument("--only-build", action="store_true", help="write the random SD2.1-base folder and stop")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="faceid-real-shapes-"))
    model = work / "sd21-base-random"
    backbone = work / "face_vit.safetensors"
    shipped = tomllib.loads((ROOT / "configs" / "sd21-base.toml").read_text())
    if not (model / "model_index.json").is_file():
        build_random_sd21(model)
    if not backbone.is_file():
        build_random_backbone(backbone, shipped["model"]["backbone_config"])
    if args.only_build:
        print(f"built {model} and {backbone}")
        return
    photos = args.photos
    if photos is None:
        photos = work / "photos"
        photos.mkdir(exist_ok=True)
        for name in ("obama.jpg", "biden.jpg"):
            (photos / name).write_bytes((FACES / name).read_bytes())
    out = work / "run"
    overrides = [f'model.base="{model}"', f'model.backbone="{backbone}"', f'data.reconstruction=["{photos}"]',
                 "data.triplets=[]", "data.triplet_fraction=0.0", f"data.resolution={args.resolution}",
                 f"train.steps={args.steps}", f'train.device="{args.device}"', f'data.face_backend="{args.face_backend}"',
                 f'output.dir="{out}"', "output.log_every=1", "output.validation=[]"]
    if args.batch != "shipped":
        overrides += [f"train.batch_size={int(args.batch)}", f"train.micro_batch_size={int(args.batch)}"]
    command = [sys.executable, "-m", "faceid_cli", "train", str(ROOT / "configs" / "sd21-base.toml")]
    for item in overrides:
        command += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode:
        print(done.stderr[-3000:])
        raise SystemExit(done.returncode)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20  # KiB → GiB
    config = tomllib.loads((out / "config.toml").read_text())
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    encoder_config = json.loads((out / "encoder" / "config.json").read_text())
    latent = args.resolution // 8
    print(f"config: configs/sd21-base.toml, mixed_precision {config['train']['mixed_precision']}, gradient "
          f"checkpointing {config['train']['gradient_checkpointing']}, lr {config['train']['learning_rate']}, "
          f"k {config['model']['num_words']}, {args.resolution} px")
    b, batch = config["train"]["micro_batch_size"], config["train"]["batch_size"]
    print(f"shapes: words ({b}, {encoder_config['num_words']}, {encoder_config['word_dims'][0]}) -> prompt_embeds "
          f"({b}, 77, 1024) -> UNet latents ({b}, 4, {latent}, {latent})")
    print(f"steps: {len(metrics)}, loss {[m['loss'] for m in metrics]}, {metrics[-1]['steps_per_s']:.3f} steps/s "
          f"({metrics[-1]['steps_per_s'] * batch:.2f} samples/s, batch {batch} in micro-batches of {b}; whole command "
          f"{seconds:.0f} s, loading included)")
    if "peak_memory_gib" in metrics[-1]:
        gpu = metrics[-1]["peak_memory_gib"]
        print(f"peak GPU memory of training: {gpu:.2f} GiB at micro-batch {b}, {args.resolution} px (all weights fp32, "
              f"the frozen UNet, VAE and text encoder included)")
    print(f"peak memory of the training process: {peak:.1f} GiB (host RSS, micro-batch {b} at {args.resolution} px)")


if __name__ == "__main__":
    main()
