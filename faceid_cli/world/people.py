"""Who lives in the world: identities drawn from seeds, and the disjoint seed ranges they come from.

An identity is a set of hidden traits (head shape, skin, eyes, brows, hair, nose, mouth, ears,
facial hair, a mole) drawn from one seed; every image of that person shows the same traits. Seeds
come from disjoint ranges, so a model trained on one population never saw a person of another:

- ``celebrities``: the N people the world's text-to-image model knows by name;
- ``crowd``: people the text-to-image model saw without names (as real T2I models saw millions of
  unnamed faces), each drawn through two words learnt only during its training and never shipped;
- ``reconstruction``: the encoder's training photos (the world's FFHQ);
- ``recogniser`` and ``backbone``: the populations the evaluation recogniser and the encoder's face
  backbone are trained on (separately, as ArcFace and the paper's encoder backbone are);
- ``held_out``: evaluation identities that no model ever saw.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: name → (first seed, end seed): the one table of identity ranges
SEED_RANGES: dict[str, tuple[int, int]] = {
    "celebrities": (0, 10_000),
    "crowd": (10_000, 1_000_000),
    "reconstruction": (1_000_000, 2_000_000),
    "recogniser": (2_000_000, 3_000_000),
    "backbone": (3_000_000, 4_000_000),
    "held_out": (9_000_000, 10_000_000),
}
POPULATIONS = tuple(SEED_RANGES)
#: how many celebrities the world's text-to-image models know by name
NUM_CELEBRITIES = 100

HAIR_STYLES = ("buzz", "short", "side-part", "long", "bob", "curly", "bun", "bald")
HAIR_COLOURS = {
    "black": (28, 24, 22), "dark-brown": (66, 42, 28), "brown": (112, 72, 40), "auburn": (140, 58, 30),
    "blond": (222, 188, 110), "red": (186, 70, 36), "gray": (150, 150, 150), "white": (232, 232, 226),
}
EYE_COLOURS = {
    "brown": (96, 56, 24), "dark": (30, 22, 18), "blue": (50, 110, 200), "green": (50, 140, 70),
    "gray": (120, 130, 140), "amber": (190, 130, 40),
}
SKIN_LIGHT = np.array([250, 216, 186], dtype=np.float64)
SKIN_DARK = np.array([86, 54, 36], dtype=np.float64)
FACIAL_HAIR = ("none", "moustache", "beard", "stubble")
NOSE_STYLES = ("point", "round", "wide")


@dataclass(frozen=True)
class Identity:
    """The traits of one person (sizes in pixels of the 64 px canvas, at scale 1)."""

    seed: int
    skin: tuple[int, int, int]
    face_half_width: float
    face_half_height: float
    face_squareness: float  # superellipse exponent: 2 round … 3.6 square
    chin_taper: float  # 0 none … 0.35 pointed
    eye_spacing: float  # half the distance between the eye centres
    eye_height: float  # eye line offset from the head centre (negative: up)
    eye_width: float
    eye_aspect: float  # height / width
    eye_colour: str
    brow_thickness: float
    brow_angle: float  # degrees, positive: outer ends up
    hair_style: str
    hair_colour: str
    nose_style: str
    nose_length: float
    nose_width: float
    mouth_width: float
    lip_thickness: float
    smile: float  # corner lift in px
    lip_colour: tuple[int, int, int]
    ear_size: float
    facial_hair: str
    mole: tuple[float, float] | None  # position on the face, in face half-sizes

    def to_dict(self) -> dict:
        return asdict(self)


def population_of(seed: int) -> str:
    for name, (start, end) in SEED_RANGES.items():
        if start <= seed < end:
            return name
    raise ValueError(f"identity seed {seed} is in no population ({', '.join(POPULATIONS)})")


def population_seeds(population: str, count: int, offset: int = 0) -> list[int]:
    """The first ``count`` seeds of ``population`` (after ``offset``): stable, disjoint lists."""
    if population not in SEED_RANGES:
        raise ValueError(f"unknown population '{population}'; use one of: {', '.join(POPULATIONS)}")
    start, end = SEED_RANGES[population]
    if count < 0 or offset < 0 or start + offset + count > end:
        raise ValueError(f"population '{population}' has {end - start} identities")
    return list(range(start + offset, start + offset + count))


def identity_from_seed(seed: int) -> Identity:
    """The person of ``seed``: the same traits every time, on every machine."""
    rng = np.random.default_rng(np.random.SeedSequence([0x1D, int(seed)]))
    tone = rng.uniform(0.0, 1.0) ** 1.2
    skin = SKIN_LIGHT * (1 - tone) + SKIN_DARK * tone + rng.normal(0, 6, 3) * np.array([1.0, 0.8, 0.6])
    skin = tuple(int(v) for v in np.clip(skin, 0, 255))
    hair_style = HAIR_STYLES[rng.integers(len(HAIR_STYLES))]
    hair_colour = list(HAIR_COLOURS)[rng.integers(len(HAIR_COLOURS))]
    lips = np.array(skin, dtype=np.float64) * rng.uniform(0.55, 0.8) + np.array([60, 10, 10]) * rng.uniform(0.3, 1)
    facial_hair = FACIAL_HAIR[rng.choice(len(FACIAL_HAIR), p=[0.6, 0.14, 0.14, 0.12])]
    mole = None
    if rng.uniform() < 0.25:
        mole = (float(rng.uniform(-0.6, 0.6)), float(rng.uniform(0.05, 0.55)))
    return Identity(
        seed=int(seed),
        skin=skin,
        face_half_width=float(rng.uniform(10.5, 13.5)),
        face_half_height=float(rng.uniform(13.0, 16.0)),
        face_squareness=float(rng.uniform(2.0, 3.6)),
        chin_taper=float(rng.uniform(0.0, 0.35)),
        eye_spacing=float(rng.uniform(4.3, 6.4)),
        eye_height=float(rng.uniform(-3.5, -0.5)),
        eye_width=float(rng.uniform(3.2, 4.8)),
        eye_aspect=float(rng.uniform(0.5, 0.95)),
        eye_colour=list(EYE_COLOURS)[rng.integers(len(EYE_COLOURS))],
        brow_thickness=float(rng.uniform(0.6, 1.8)),
        brow_angle=float(rng.uniform(-18, 18)),
        hair_style=hair_style,
        hair_colour=hair_colour,
        nose_style=NOSE_STYLES[rng.integers(len(NOSE_STYLES))],
        nose_length=float(rng.uniform(3.0, 6.0)),
        nose_width=float(rng.uniform(2.0, 4.2)),
        mouth_width=float(rng.uniform(4.5, 9.5)),
        lip_thickness=float(rng.uniform(0.8, 2.2)),
        smile=float(rng.uniform(-1.0, 1.8)),
        lip_colour=tuple(int(v) for v in np.clip(lips, 0, 255)),
        ear_size=float(rng.uniform(1.8, 3.4)),
        facial_hair=facial_hair,
        mole=mole,
    )


def trait_vector(person: Identity) -> np.ndarray:
    """A person's traits as one float vector: measurements scaled to [0, 1] by their ranges, colours
    in [0, 1], kinds one-hot. What a text encoder that "knows what a celebrity looks like" holds
    about them (see :func:`faceid_cli.world.recipes.clip.train_text_towers`)."""
    ranges = {"face_half_width": (10.5, 13.5), "face_half_height": (13.0, 16.0), "face_squareness": (2.0, 3.6),
              "chin_taper": (0.0, 0.35), "eye_spacing": (4.3, 6.4), "eye_height": (-3.5, -0.5),
              "eye_width": (3.2, 4.8), "eye_aspect": (0.5, 0.95), "brow_thickness": (0.6, 1.8),
              "brow_angle": (-18, 18), "nose_length": (3.0, 6.0), "nose_width": (2.0, 4.2),
              "mouth_width": (4.5, 9.5), "lip_thickness": (0.8, 2.2), "smile": (-1.0, 1.8), "ear_size": (1.8, 3.4)}
    values = [(getattr(person, name) - low) / (high - low) for name, (low, high) in ranges.items()]
    values += [v / 255 for v in (*person.skin, *person.lip_colour)]
    for value, kinds in ((person.hair_style, HAIR_STYLES), (person.hair_colour, tuple(HAIR_COLOURS)),
                         (person.eye_colour, tuple(EYE_COLOURS)), (person.facial_hair, FACIAL_HAIR),
                         (person.nose_style, NOSE_STYLES)):
        values += [float(value == kind) for kind in kinds]
    values.append(float(person.mole is not None))
    return np.asarray(values, dtype=np.float32)


# ---- celebrity names ---------------------------------------------------------------------------
_FIRST = ("ka", "lo", "mi", "ra", "te", "su", "vo", "ne", "di", "ba", "jo", "fe", "ha", "zi", "po", "ru")
_MIDDLE = ("ren", "lan", "mor", "vik", "sel", "dan", "tor", "bel", "nix", "qua", "gor", "lis")
_END = ("a", "o", "i", "e", "is", "an", "us", "en")


def celebrity_names(count: int) -> list[str]:
    """``count`` made-up two-word names, distinct in both words, the same every time.

    Every first and last name is used once, so each celebrity is named by two words of its own
    (as real celebrities' names are several tokens that mostly appear with them).
    """
    rng = np.random.default_rng(0xCE1EB)
    words = sorted({f + m + e for f in _FIRST for m in _MIDDLE for e in _END})
    order = rng.permutation(len(words))
    if 2 * count > len(words):
        raise ValueError(f"at most {len(words) // 2} celebrity names can be made")
    picked = [words[i] for i in order[: 2 * count]]
    return [f"{picked[2 * i].capitalize()} {picked[2 * i + 1].capitalize()}" for i in range(count)]
