"""``--method faceclip``: FaceCLIP's joint ID-text encoder (:mod:`faceid_cli.encoders.faceclip`).

An identity stores face features, not words: each branch's identity vector and 12×12 patch tokens
(photos of one person are averaged). Every prompt is encoded with them: ``S*`` becomes
:data:`~faceid_cli.conditioning.NEUTRAL_SUBJECT` and the release's prefix
``"Photo of a id person. "`` goes in front, its "id" token carrying the face (an encoder trained
with ``face_at = "subject"`` carries it on the subject word where ``S*`` was, with no prefix). The
negative branch is the release's (black face, no prefix) unless a plain text negative is asked for.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from ..conditioning import PromptEmbeds, replace_identity
from ..errors import MissingModelError
from ..names import FACECLIP_NEGATIVE_BRANCHES, FACECLIP_RELEASE
from .base import Method


def faceclip_text(prompt: str, token: str) -> str:
    """The prompt as FaceCLIP's encoder takes it: ``S*`` marked as where the person goes (the
    encoder's tokenizer makes it a neutral subject, or the face word when the face goes there)."""
    from ..encoders.faceclip import FACE_MARK

    return replace_identity(prompt, token, FACE_MARK)


def faceclip_tokenizer(pipe):
    """SDXL's second tokenizer: the bigG vocabulary (the same BPE as L/14's)."""
    return getattr(pipe, "tokenizer_2", None) or pipe.tokenizer


def embeds_for(pipe, encoder, prompts: list[str], faces) -> PromptEmbeds:
    batch = len(prompts)
    embeds, pooled, truncated = encoder.condition(faceclip_tokenizer(pipe), prompts, faces, batch)
    dtype = pipe.unet.dtype
    xl = getattr(pipe, "text_encoder_2", None) is not None
    return PromptEmbeds(embeds.to(dtype), pooled.to(dtype) if xl else None, truncated)


class FaceClipMethod(Method):
    name = "faceclip"
    encoder_type = "faceclip"
    summary = "FaceCLIP's joint ID-text encoder (SDXL): face features fused with every prompt"
    training_module = "faceid_cli.train.faceclip"
    negative_branches = FACECLIP_NEGATIVE_BRANCHES

    def random_encoder(self, model_location: str, dims: tuple[int, ...]):
        from ..encoders.faceclip import build_random_faceclip_encoder
        from ..models.tiny import TINY_CONTEXT_LENGTH, TINY_VOCAB_SIZE

        return build_random_faceclip_encoder(dims, TINY_VOCAB_SIZE, TINY_CONTEXT_LENGTH)

    def locate_encoder(self, source) -> Path:
        """A checkpoint folder or file of ours (or a training run's folder or checkpoint), the
        release's ``face_clip_encoder.pt`` (or a folder holding it and ``unet.pt``), or a Hugging
        Face repo id (``ByteDance/FaceCLIP``) looked up in the local cache: nothing is downloaded."""
        from ..train.layout import trained_encoder

        path = Path(source)
        if path.exists():
            return trained_encoder(path)
        if str(source).count("/") == 1 and not str(source).startswith((".", "/")):
            from huggingface_hub import try_to_load_from_cache

            from ..models.registry import hub_cache_dir

            found = try_to_load_from_cache(str(source), FACECLIP_RELEASE["encoder"], cache_dir=str(hub_cache_dir()))
            if isinstance(found, str):
                return Path(found).parent
            raise MissingModelError(
                f"FaceCLIP repo '{source}' is not in the Hugging Face cache ({hub_cache_dir()})",
                f"download it where you have network (huggingface-cli download {FACECLIP_RELEASE['repo']}) "
                f"and point HF_HOME at it, or pass the folder; licence {FACECLIP_RELEASE['license']}",
            )
        raise MissingModelError(f"encoder checkpoint '{source}' not found", "check the --encoder path")

    def load_encoder(self, path):
        from ..encoders import load_encoder
        from ..encoders.base import PICKLE_SUFFIXES
        from ..encoders.faceclip import load_release_encoder

        path = Path(path)
        release = path / FACECLIP_RELEASE["encoder"] if path.is_dir() else path
        if path.is_dir() and not (path / "model.safetensors").is_file() and release.is_file():
            config_file = path / "config.json"
            config = json.loads(config_file.read_text(encoding="utf-8")) if config_file.is_file() else None
            encoder = load_release_encoder(release, config)
        elif path.suffix in PICKLE_SUFFIXES:
            encoder = load_release_encoder(path)
        else:
            encoder = load_encoder(path)
            # a run of 'faceid train' that fine-tuned the UNet saved it beside the encoder
            tuned = path / "unet" if path.is_dir() else None
            encoder.tuned_unet = tuned if tuned is not None and (tuned / "config.json").is_file() else None
            return encoder
        unet = release.parent / FACECLIP_RELEASE["unet"]
        # the release fine-tuned the whole SDXL UNet: it comes with the encoder
        encoder.tuned_unet = unet if unet.is_file() else None
        return encoder

    def prepare_pipeline(self, pipe, encoder) -> None:
        unet = getattr(encoder, "tuned_unet", None)
        if unet is None:
            return
        if Path(unet).is_dir():
            from safetensors.torch import load_file

            load_unet_state(pipe, load_file(str(Path(unet) / "diffusion_pytorch_model.safetensors")), unet)
        else:
            load_release_unet(pipe, unet)

    def identity_tensors(self, encoder, crops: torch.Tensor) -> dict[str, torch.Tensor]:
        features = encoder.face_features(crops)
        return {name: value.float().mean(dim=0).cpu().clone() for name, value in features.items()}

    def prompt_embeds(self, pipe, encoder, identities: Sequence, prompts: Sequence[str], token: str) -> PromptEmbeds:
        names = [n for n in identities[0].tensors if n.endswith((".identity", ".patches"))]
        faces = {n: torch.stack([identity.tensors[n] for identity in identities]) for n in names}
        return embeds_for(pipe, encoder, [faceclip_text(p, token) for p in prompts], faces)

    def negative_embeds(self, pipe, encoder, negative_prompts: Sequence[str], options: dict) -> PromptEmbeds | None:
        if options.get("negative", "release") == "text":
            return None
        return embeds_for(pipe, encoder, list(negative_prompts), None)

    def neutral_embeds(self, pipe, encoder, prompts: Sequence[str], token: str) -> PromptEmbeds:
        # FaceCLIP's UNet reads FaceCLIP's embeddings: the prompt through its encoder with no face
        # and no prefix, as its negative branch is built
        return embeds_for(pipe, encoder, [replace_identity(p, token) for p in prompts], None)


METHOD = FaceClipMethod()


def load_release_unet(pipe, path) -> None:
    """Load the release's fine-tuned SDXL UNet (``unet.pt``, a state dict read with
    ``weights_only=True``) into ``pipe.unet``, every key matching."""
    from ..encoders.base import pickle_problem, read_pickle_state_dict

    try:
        state = read_pickle_state_dict(path)
    except Exception as exc:  # torch raises several types for damaged or foreign pickles
        raise MissingModelError(f"cannot read FaceCLIP UNet '{path}': {pickle_problem(exc)}",
                                "pass the release's unet.pt (weights only)") from None
    for prefix in ("module.", "model.", "unet."):
        if state and all(key.startswith(prefix) for key in state):
            state = {key[len(prefix):]: value for key, value in state.items()}
    load_unet_state(pipe, state, path)


def load_unet_state(pipe, state: dict, path) -> None:
    try:
        pipe.unet.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MissingModelError(f"FaceCLIP UNet '{path}' does not fit the model's UNet: "
                                f"{' '.join(str(exc).split())[:300]}",
                                "use --model sdxl (the release fine-tuned SDXL base 1.0)") from None
