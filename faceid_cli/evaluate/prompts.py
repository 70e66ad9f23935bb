"""The prompt sets ``faceid evaluate --prompts NAME`` ships (or a file: one prompt a line)."""

from __future__ import annotations

from pathlib import Path

from ..errors import InvalidArgumentError
from ..names import GENERATION_DEFAULTS

#: DreamIdentity's appendix (Fig. 7): the edit prompts of the self-augmented set and its figures
DREAMIDENTITY = (
    "Oil painting style, S* face", "Watercolor style, S* face", "Pencil art style, S* face",
    "Fauvism painting, S* face", "S* as a wizard, looking at the camera", "S* wearing a hat, looking at the camera",
    "S* as a chef, looking at the camera", "S* as a nurse, looking at the camera",
    "S* as a police, looking at the camera",
)
#: wider: clothing, accessory, action, style, background and view, four of each
WIDE = (
    "S* wearing a red sweater", "S* in a business suit", "S* wearing a denim jacket", "S* in a spacesuit",
    "S* wearing sunglasses", "S* wearing a baseball cap", "S* wearing headphones", "S* with a scarf",
    "S* playing the guitar", "S* reading a book", "S* riding a bicycle", "S* drinking coffee",
    "a watercolor painting of S*", "a pencil sketch of S*", "S* in the style of a comic book", "a 3D render of S*",
    "S* on a beach at sunset", "S* in a snowy forest", "S* in front of the Eiffel Tower", "S* in a library",
    "a close-up photo of S*", "a full-body photo of S*", "S* seen from the side", "S* looking up at the sky",
)


def world_prompts(count: int = 16, seed: int = 5) -> tuple[str, ...]:
    """Context prompts of the miniature world with ``S*``: every attribute named, drawn with a
    fixed seed so every run and every method sees the same ones."""
    import numpy as np

    from ..world.contexts import all_contexts, caption

    contexts = all_contexts()
    rng = np.random.default_rng(seed)
    return tuple(caption(contexts[i], "S*") for i in rng.choice(len(contexts), size=count, replace=False))


PROMPT_SETS = {"dreamidentity": lambda: DREAMIDENTITY, "wide": lambda: WIDE, "world": world_prompts}


def load_prompts(spec: str) -> list[str]:
    """A shipped set by name, or a file with one prompt a line (blank lines and # comments skipped)."""
    if spec in PROMPT_SETS:
        return list(PROMPT_SETS[spec]())
    path = Path(spec)
    if not path.is_file():
        raise InvalidArgumentError(f"--prompts '{spec}' is neither a prompt set nor a file",
                                   f"use one of {', '.join(PROMPT_SETS)} or a file with one prompt a line")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
               if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise InvalidArgumentError(f"--prompts file '{path}' has no prompt", "write one prompt a line")
    token = GENERATION_DEFAULTS["identity_token"]
    missing = [prompt for prompt in prompts if token not in prompt]
    if missing:
        raise InvalidArgumentError(f"every prompt in '{path}' needs {token} where the person goes: {missing[0]!r}",
                                   f"write prompts like '{token} as a chef'")
    return prompts
