"""Text alignment: the cosine of CLIP image and text embeddings, as DreamIdentity and the field
report it ("CLIP-T"), computed with transformers' ``CLIPModel``.

One loader for every CLIP: ``openai/clip-vit-large-patch14`` (the usual choice on real bases,
looked up offline in the Hugging Face cache), any repo id or local folder, or ``world`` (the
miniature world's CLIP, shipped with faceid). The image processor runs on its PIL backend, the
same on every machine with or without torchvision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import MissingModelError

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
WORLD_CLIP = "world"


def resolve_clip(name: str) -> tuple[str, bool]:
    """(where to load from, whether it is a local folder) for a scorer name."""
    if name == WORLD_CLIP:
        from ..world import component_path

        return str(component_path("clip")), True
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path), True
    return name, False


def check_clip_available(name: str, allow_download: bool = False) -> None:
    """Raise the one-line error now if the scorer ``name`` cannot be loaded for want of files:
    the commands that score call this before they generate, not after hours of it."""
    from ..models.registry import find_in_cache, hub_cache_dir, is_repo_id

    location, local = resolve_clip(name)
    world = "or use --clip world for the miniature world"
    if local:
        if not (Path(location) / "config.json").is_file():
            raise MissingModelError(f"the CLIP scorer '{name}' has no config.json in '{location}'",
                                    f"pass the folder a CLIPModel was saved to, {world}")
        return
    if not is_repo_id(location):
        raise MissingModelError(f"the CLIP scorer '{name}' is neither a folder nor a Hugging Face repo id",
                                f"check the --clip path or repo id, {world}")
    if not allow_download and find_in_cache(location, "config.json") is None:
        raise MissingModelError(
            f"the CLIP scorer '{name}' is not in the Hugging Face cache at {hub_cache_dir()}",
            f"download it once with 'hf download {location}' (or pass --allow-download), pass a local folder, {world}",
        )


class ClipScorer:
    def __init__(self, model, processor, tokenizer, name: str):
        self.model = model.eval()
        self.processor = processor
        self.tokenizer = tokenizer
        self.name = name

    @classmethod
    def from_pretrained(cls, name: str = DEFAULT_CLIP, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, allow_download: bool = False) -> ClipScorer:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        from ..models.registry import hub_cache_dir, library_progress_bars_off

        check_clip_available(name, allow_download)
        location, local = resolve_clip(name)
        kwargs = {} if local else {"local_files_only": not allow_download, "cache_dir": str(hub_cache_dir())}
        try:
            with library_progress_bars_off("transformers"):
                model = CLIPModel.from_pretrained(location, dtype=dtype, **kwargs)
                processor = AutoImageProcessor.from_pretrained(location, backend="pil", **kwargs)
                tokenizer = AutoTokenizer.from_pretrained(location, **kwargs)
        except OSError as exc:
            raise MissingModelError(
                f"cannot load the CLIP scorer '{name}': {str(exc).splitlines()[0]}",
                f"download it once with 'hf download {location}', pass a local folder, or use --clip world "
                "for the miniature world",
            ) from None
        return cls(model.to(device), processor, tokenizer, name)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def image_embeddings(self, images: Sequence, batch_size: int = 64) -> torch.Tensor:
        out = []
        for start in range(0, len(images), batch_size):
            chunk = [image.convert("RGB") for image in images[start:start + batch_size]]
            pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(device=self.device, dtype=self.model.dtype)
            out.append(_as_tensor(self.model.get_image_features(pixel_values=pixels)))
        return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1).cpu()

    @torch.inference_mode()
    def text_embeddings(self, texts: Sequence[str], batch_size: int = 256) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), padding="max_length", truncation=True,
                                    max_length=self.tokenizer.model_max_length, return_tensors="pt").to(self.device)
            out.append(_as_tensor(self.model.get_text_features(input_ids=tokens.input_ids,
                                                               attention_mask=tokens.attention_mask)))
        return torch.nn.functional.normalize(torch.cat(out).float(), dim=-1).cpu()

    def similarity_matrix(self, images: Sequence, texts: Sequence[str]) -> torch.Tensor:
        """(len(images), len(texts)) cosines."""
        return self.image_embeddings(images) @ self.text_embeddings(texts).T

    def score(self, images: Sequence, texts: Sequence[str]) -> torch.Tensor:
        """The cosine of each image with its own text."""
        if len(images) != len(texts):
            raise ValueError("score() takes one text per image")
        return (self.image_embeddings(images) * self.text_embeddings(texts)).sum(-1)


def _as_tensor(features) -> torch.Tensor:
    # transformers 5 returns a model output whose pooler_output is the projected embedding; 4.x a tensor
    return features if isinstance(features, torch.Tensor) else features.pooler_output
