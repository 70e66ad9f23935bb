"""The world's ground-truth check inside ``faceid evaluate``: what context an image shows, read by
the world's context classifier (no text model involved), against what its prompt asked.

Two figures per image, on world models only:

- ``context``: the share of the attributes the prompt names that the image shows as asked;
- ``context_copied``: over the attributes where the prompt asks for something other than the
  reference photo shows, the share where the image shows the reference's value instead. This is
  the editability failure self-augmentation exists to fix (an encoder that copies the reference's
  hat into ``S*``). ``None`` where the prompt asks nothing that conflicts with the reference. A
  person given by several photos conflicts where the prompt asks what none of them shows, and an
  image copies where it shows what one of them shows.

The reference's context is read by the same classifier (0.97-1.00 accurate on renders), so any
picture can be a reference, not only renders that come with ground truth.
"""

from __future__ import annotations

from collections.abc import Sequence


def context_rows(images: Sequence, prompts: Sequence[str], references: Sequence, batch_size: int = 256) -> list[dict]:
    """``{"context": float | None, "context_copied": float | None}`` per image; ``references`` holds
    each image's reference: a photo (a PIL image) or a person's photos (a sequence of them),
    repeats allowed."""
    from ..world.contexts import ATTRIBUTES, parse_prompt
    from ..world.quality import Judges, images_to_tensor

    judges = Judges.load()
    size = judges.classifier.config.get("image_size", 64)

    def read(pictures: Sequence) -> list[dict[str, str]]:
        shown = []
        for start in range(0, len(pictures), batch_size):
            chunk = [p.convert("RGB").resize((size, size)) for p in pictures[start:start + batch_size]]
            predicted = judges.classify(images_to_tensor(chunk))
            shown += [{name: ATTRIBUTES[name][int(predicted[name][i])] for name in ATTRIBUTES} for i in range(len(chunk))]
        return shown

    groups = [list(r) if isinstance(r, (list, tuple)) else [r] for r in references]
    distinct = list({id(photo): photo for group in groups for photo in group}.values())
    photo_context = dict(zip((id(photo) for photo in distinct), read(distinct)))
    rows = []
    for shown, prompt, group in zip(read(list(images)), prompts, groups):
        asked = parse_prompt(prompt)
        own = {name: {photo_context[id(photo)][name] for photo in group} for name in ATTRIBUTES}
        conflicting = [name for name, value in asked.items() if value not in own[name]]
        rows.append({
            "context": sum(shown[n] == v for n, v in asked.items()) / len(asked) if asked else None,
            "context_copied": (sum(shown[n] in own[n] for n in conflicting) / len(conflicting)) if conflicting else None,
        })
    return rows
