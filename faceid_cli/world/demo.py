"""The world's demo: a person kept and a prompt obeyed, in one picture a person can judge.

Each row: the reference, then generations in contexts the prompt asks for, each captioned with
its prompt and with what the world's own judges see in it: whether the recogniser takes the face
for the reference's person, and which asked attributes the context classifier finds.

- The main job: people no model of the world ever saw (``held_out``), each encoded from one
  render by the shipped M² encoder (``faceid train`` on the world), asked for contexts that
  contradict the reference's (its hat, glasses, shirt and background).
- Below them: celebrities the world's text-to-image model knows by name, in (background, hat)
  pairs it never saw them in: the model's own ceiling for a person kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .contexts import ATTRIBUTES, Context, caption

DEMO_HELD_OUT = (0, 1, 2)
DEMO_CELEBRITIES = (0,)
DEMO_STEPS = 30
DEMO_GUIDANCE = 5.0
#: the references' own context: what the prompts then contradict
REFERENCE_CONTEXT = Context(style="photo", hat="blue", glasses="glasses", shirt="red", background="yellow")


def _conflicting(rng: np.random.Generator, reference: Context, count: int) -> list[Context]:
    """``count`` photo contexts whose hat, glasses, shirt and background all differ from ``reference``."""
    out = []
    for _ in range(count):
        values = {name: rng.choice([v for v in ATTRIBUTES[name] if v != getattr(reference, name)])
                  for name in ("hat", "glasses", "shirt", "background")}
        out.append(Context(style="photo", **{k: str(v) for k, v in values.items()}))
    return out


def make_demo(out: Path, seed: int = 0, held_out: tuple[int, ...] = DEMO_HELD_OUT,
              people: tuple[int, ...] = DEMO_CELEBRITIES, per_person: int = 4) -> Path:
    """Write ``out/world-demo.png`` (the contact sheet) and the generated images; return the sheet."""
    from ..contact_sheet import contact_sheet
    from ..faces import load_analyzer
    from ..images import save_image
    from ..pipeline_faceid import FaceIDPipeline, RenderRequest, shipped_encoder
    from ..models.registry import resolve_model
    from .celebrities import celebrities, held_out_pairs
    from .people import population_seeds
    from .quality import Judges
    from .render import Pose, render

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    analyzer = load_analyzer("world")
    judges = Judges.load()
    rows, captions = [], []
    rng = np.random.default_rng(seed)

    def row_for(reference, label: str, prompts: list[tuple[str, Context]], pipeline, identity, stem: str, first: int):
        save_image(reference, out / f"{stem}-reference.png")
        embedding = analyzer.embed(reference, analyzer.detect(reference)[0])
        row, row_captions = [reference], [label]
        # the row in one batch: each image still starts from its own seed's noise
        images = pipeline.render([RenderRequest(identity, prompt, "", first + k) for k, (prompt, _) in enumerate(prompts)],
                                 steps=DEMO_STEPS, guidance=DEMO_GUIDANCE)
        for k, ((prompt, asked), image) in enumerate(zip(prompts, images)):
            save_image(image, out / f"{stem}-{k}.png")
            row.append(image)
            row_captions.append(_verdict(prompt, asked, image, analyzer, judges, embedding))
        rows.append(row)
        captions.append(row_captions)

    if shipped_encoder(resolve_model("world"), "m2") is not None and held_out:
        pipeline = FaceIDPipeline.from_model("world", method="m2", device="cpu", analyzer=analyzer)
        seeds = population_seeds("held_out", max(held_out) + 1)
        for index in held_out:
            reference = render(seeds[index], REFERENCE_CONTEXT, Pose()).image
            path = out / f"held-out-{index}-reference.png"
            save_image(reference, path)
            identity = pipeline.identity_from(path)
            asked = _conflicting(rng, REFERENCE_CONTEXT, per_person)
            row_for(reference, f"held-out person {index}: one reference, encoded", [(caption(c, "S*"), c) for c in asked],
                    pipeline, identity, f"held-out-{index}", seed + 100 * index)
    named = FaceIDPipeline.from_model("world", method="none", device="cpu")
    known = celebrities(max(people) + 1) if people else []
    for index in people:
        identity_seed, name = known[index]
        reference = render(identity_seed, Context(style="photo", hat="none", glasses="none", background="gray"),
                           Pose()).image
        prompts = []
        for background, hat in held_out_pairs(index)[:per_person]:
            others = {a: v[rng.integers(len(v))] for a, v in ATTRIBUTES.items() if a not in ("background", "hat", "style")}
            asked = Context(background=background, hat=hat, style="photo", **others)
            prompts.append((caption(asked, name), asked))
        row_for(reference, f"{name}: a celebrity, by name", prompts, named, None, f"celebrity-{index}",
                seed + 10_000 + 10 * index)
    sheet = contact_sheet(rows, captions, cell=160, caption_lines=7, font_size=11,
                          title="faceid world demo: a reference, then generations asked for other contexts "
                          "(held-out people through the M2 encoder; a celebrity by name)")
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
