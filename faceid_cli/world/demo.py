"""The world's demo: a person kept and a prompt obeyed, in one picture a person can judge.

Each row: the reference (a render of the person), then generations in contexts the prompt asks
for, each captioned with its prompt and with what the world's own judges see in it: who the
recogniser takes the face for, and which asked attributes the context classifier finds. The
people are celebrities the world's text-to-image model knows by name, in (background, hat) pairs
it never saw them in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contexts import ATTRIBUTES, Context, caption

DEMO_CELEBRITIES = (0, 1, 2)
DEMO_STEPS = 30
DEMO_GUIDANCE = 5.0


def make_demo(out: Path, seed: int = 0, people: tuple[int, ...] = DEMO_CELEBRITIES, per_person: int = 4) -> Path:
    """Write ``out/world-demo.png`` (the contact sheet) and the generated images; return the sheet."""
    from ..contact_sheet import contact_sheet
    from ..faces import load_analyzer
    from ..images import save_image
    from ..pipeline_faceid import FaceIDPipeline
    from .celebrities import celebrities, held_out_pairs
    from .quality import Judges
    from .render import Pose, render

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pipeline = FaceIDPipeline.from_model("world", method="none", device="cpu")
    analyzer = load_analyzer("world")
    judges = Judges.load()
    known = celebrities(max(people) + 1)
    gallery = {}
    rows, captions = [], []
    rng = np.random.default_rng(seed)
    for index in people:
        identity, name = known[index]
        reference = render(identity, Context(style="photo", hat="none", glasses="none", background="gray"), Pose()).image
        save_image(reference, out / f"reference-{index}.png")
        gallery[index] = analyzer.embed(reference, analyzer.detect(reference)[0])
        row, row_captions = [reference], [f"{name} (reference render)"]
        for k, (background, hat) in enumerate(held_out_pairs(index)[:per_person]):
            others = {a: v[rng.integers(len(v))] for a, v in ATTRIBUTES.items() if a not in ("background", "hat", "style")}
            asked = Context(background=background, hat=hat, style="photo", **others)
            prompt = caption(asked, name)
            image = pipeline(None, prompt, seeds=[seed + 10 * index + k], steps=DEMO_STEPS, guidance=DEMO_GUIDANCE)[0]
            save_image(image, out / f"{index}-{k}.png")
            row.append(image)
            row_captions.append(_verdict(prompt, asked, image, analyzer, judges, gallery[index]))
        rows.append(row)
        captions.append(row_captions)
    sheet = contact_sheet(rows, captions, cell=160, caption_lines=7, font_size=11,
                          title="faceid world demo: reference, then the world model asked by name for contexts "
                          "it never saw this person in")
    path = out / "world-demo.png"
    save_image(sheet, path)
    return path


def _verdict(prompt: str, asked: Context, image, analyzer, judges, reference_embedding) -> str:
    from ..faces.face import cosine_similarity
    from .quality import images_to_tensor

    faces = analyzer.detect(image)
    if faces:
        similarity = cosine_similarity(analyzer.embed(image, faces[0]), reference_embedding)
        same = "same person" if similarity >= analyzer.same_person_threshold else "another person"
        identity = f"{same} (cos {similarity:.2f})"
    else:
        identity = "no face found"
    predicted = judges.classify(images_to_tensor([image]))
    shown = {name: ATTRIBUTES[name][int(predicted[name][0])] for name in ATTRIBUTES}
    checks = [f"{name} {'ok' if shown[name] == value else 'NO: ' + shown[name]}"
              for name, value in asked.to_dict().items() if name in ("hat", "glasses", "shirt", "background")]
    return f"{prompt}. {identity}; " + ", ".join(checks)
