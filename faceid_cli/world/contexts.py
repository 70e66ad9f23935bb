"""What prompts control in the world, and the one grammar that turns a context into words and back.

A context is one value per attribute: style, headwear, glasses, shirt colour and background. The
caption of an image names them in a fixed order with fixed wording::

    a photo of Kamora Vikis wearing a red hat, wearing sunglasses, in a blue shirt, green background

Absence is said with a word of its own ("bareheaded", "unspectacled"), never with the object's word
("no hat"): a tiny text encoder reads words, not negation. Any phrase may be left out of a prompt;
the attribute is then free. :func:`parse_prompt` reads back what a prompt asks for, which is what
the ground-truth check compares an image with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: attribute → its values, in class-index order (the context classifier's heads follow it)
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "style": ("photo", "pencil sketch", "oil painting"),
    "hat": ("none", "red", "blue", "yellow"),
    "glasses": ("none", "glasses", "sunglasses"),
    "shirt": ("red", "blue", "green", "white"),
    "background": ("green", "blue", "purple", "gray", "yellow"),
}
#: the attributes in label-column order (a pool's ``labels[:, i]`` is ``ATTRIBUTE_NAMES[i]``)
ATTRIBUTE_NAMES: tuple[str, ...] = tuple(ATTRIBUTES)
STYLE_PHRASES = {"photo": "a photo of", "pencil sketch": "a pencil sketch of", "oil painting": "an oil painting of"}
HAT_PHRASES = {"none": "bareheaded", "red": "wearing a red hat", "blue": "wearing a blue hat",
               "yellow": "wearing a yellow hat"}
GLASSES_PHRASES = {"none": "unspectacled", "glasses": "wearing glasses", "sunglasses": "wearing sunglasses"}
NEUTRAL_SUBJECT = "a person"


@dataclass(frozen=True)
class Context:
    style: str = "photo"
    hat: str = "none"
    glasses: str = "none"
    shirt: str = "blue"
    background: str = "gray"

    def __post_init__(self):
        for name, value in self.to_dict().items():
            if value not in ATTRIBUTES[name]:
                raise ValueError(f"unknown {name} '{value}'; use one of: {', '.join(ATTRIBUTES[name])}")

    def to_dict(self) -> dict[str, str]:
        return {name: getattr(self, name) for name in ATTRIBUTES}

    def labels(self) -> dict[str, int]:
        """Class index of every attribute (the classifier's targets)."""
        return {name: ATTRIBUTES[name].index(value) for name, value in self.to_dict().items()}

    @classmethod
    def from_labels(cls, labels: Mapping[str, int]) -> Context:
        return cls(**{name: ATTRIBUTES[name][int(index)] for name, index in labels.items()})


def all_contexts() -> list[Context]:
    """Every combination of attribute values, in a fixed order."""
    import itertools

    return [Context(**dict(zip(ATTRIBUTES, values))) for values in itertools.product(*ATTRIBUTES.values())]


def caption(context: Context, subject: str = NEUTRAL_SUBJECT, include: frozenset[str] | None = None) -> str:
    """The canonical words for ``context`` with ``subject`` (a name, "a person" or ``S*``).

    ``include``: the attributes to name (default all); left-out attributes are simply not said.
    """
    include = frozenset(ATTRIBUTES) if include is None else include
    head = f"{STYLE_PHRASES[context.style]} {subject}" if "style" in include else subject
    phrases = []
    if "hat" in include:
        phrases.append(HAT_PHRASES[context.hat])
    if "glasses" in include:
        phrases.append(GLASSES_PHRASES[context.glasses])
    if "shirt" in include:
        phrases.append(f"in a {context.shirt} shirt")
    if "background" in include:
        phrases.append(f"{context.background} background")
    if not phrases:
        return head
    # the first phrase follows the subject directly ("X wearing a red hat"), the rest after commas
    return f"{head} {phrases[0]}" + "".join(f", {p}" for p in phrases[1:])


_REVERSE = {
    "style": {phrase: value for value, phrase in STYLE_PHRASES.items()},
    "hat": {phrase: value for value, phrase in HAT_PHRASES.items()},
    "glasses": {phrase: value for value, phrase in GLASSES_PHRASES.items()},
    "shirt": {f"in a {value} shirt": value for value in ATTRIBUTES["shirt"]},
    "background": {f"{value} background": value for value in ATTRIBUTES["background"]},
}


def parse_prompt(prompt: str) -> dict[str, str]:
    """The attribute values a prompt asks for (attributes it does not mention are absent).

    Matching is on the grammar's phrases, case-insensitively; longer phrases win ("wearing
    sunglasses" is not "wearing glasses").
    """
    text = " " + re.sub(r"\s+", " ", prompt.lower().replace(",", " , ")) + " "
    asked: dict[str, str] = {}
    for name, phrases in _REVERSE.items():
        for phrase in sorted(phrases, key=len, reverse=True):
            if f" {phrase} " in text:
                asked[name] = phrases[phrase]
                text = text.replace(f" {phrase} ", " | ")
                break
    return asked


def vocabulary() -> list[str]:
    """Every word the context grammar uses (what the world's tokenizer must hold whole)."""
    words: set[str] = set()
    texts = [*STYLE_PHRASES.values(), *HAT_PHRASES.values(), *GLASSES_PHRASES.values(), NEUTRAL_SUBJECT,
             *(f"in a {v} shirt" for v in ATTRIBUTES["shirt"]), *(f"{v} background" for v in ATTRIBUTES["background"])]
    for text in texts:
        words.update(text.split())
    return sorted(words)
