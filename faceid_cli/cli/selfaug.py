"""``faceid selfaug build|merge``: the self-augmented editability dataset (DreamIdentity §3.3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..names import GENERATION_DEFAULTS as DEFAULTS
from ._common import (
    AllowDownloadOption,
    BackendOption,
    DeviceOption,
    DtypeOption,
    JsonOption,
    interruptible,
    new_app,
    note,
    print_error,
    print_json,
    progress_bar,
    stdout_console,
    writable_folder,
)
from .generate import ModelOption

app = new_app(name="selfaug", help="Build the self-augmented editability dataset with the text-to-image model "
              "itself (DreamIdentity §3.3, Appendix A).")

RULE_HELP = ("How the two scores combine within each prompt: rank-sum (default: rank by ID loss ascending and by "
             "CLIP score descending, keep the lowest sum of ranks), id (ID loss alone) or clip (CLIP alone).")


@app.command()
def build(
    names: Annotated[str, typer.Option("--names", help="A file with one celebrity name a line, or 'world' "
                                       "(the miniature world's celebrities).")],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, callback=writable_folder, help="Output folder.")] = Path("selfaug-out"),
    prompts: Annotated[str | None, typer.Option("--prompts", help="Edit prompts with <name>: a file, 'appendix' "
                                                "(the paper's nine, default) or 'world'.")] = None,
    model: ModelOption = DEFAULTS["model"],
    source_prompt: Annotated[str | None, typer.Option("--source-prompt", help="Step 2's prompt, with <name> "
                                                      "[default: '<name> face, looking at the camera'; 'a photo of "
                                                      "<name>' for the world's names].")] = None,
    per_prompt: Annotated[int, typer.Option("--per-prompt", "-n", min=1, help="Images per (name, edit prompt).")] = 4,
    sources: Annotated[int, typer.Option("--sources", min=1, help="Source-face candidates per name (the first "
                                         "large enough is used).")] = 2,
    keep: Annotated[float, typer.Option("--keep", min=0.0, max=1.0, help="Fraction kept per prompt.")] = 0.25,
    rule: Annotated[str, typer.Option("--rule", help=RULE_HELP)] = "rank-sum",
    min_face: Annotated[float | None, typer.Option("--min-face", help="Shortest face side kept, in px [default: "
                                                   "128 at 512 px, scaled to the model's size].")] = None,
    seed: Annotated[int, typer.Option("--seed", min=0, help="Base seed (each image's seed depends only on the "
                                      "name, the prompt and its index).")] = 0,
    steps: Annotated[int, typer.Option("--steps", min=1, help="Denoising steps.")] = DEFAULTS["steps"],
    guidance: Annotated[float, typer.Option("--guidance", min=0.0, help="Guidance scale.")] = DEFAULTS["guidance"],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images rendered at once.")] = 4,
    clip: Annotated[str | None, typer.Option("--clip", help="CLIP for the text score [default: "
                                             "openai/clip-vit-large-patch14; world for the world].")] = None,
    neutral: Annotated[str, typer.Option("--neutral", help="What replaces the name for the CLIP score.")] = "a person",
    shard: Annotated[str | None, typer.Option("--shard", metavar="I/N|auto", help="Do only the names of shard I of "
                                              "N (name k goes to shard k mod N); then 'faceid selfaug merge'.")] = None,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    allow_download: AllowDownloadOption = False,
    backend: BackendOption = "auto",
    json_output: JsonOption = False,
) -> None:
    """Generate each name's face, edit it with every prompt, score the edits, and keep the best.

    Steps: (2) --source-prompt ('<name> face, looking at the camera'), keeping the first candidate whose face is large
    enough (every rejection recorded with its reason); (3) each edit prompt with the name, stored
    with S* in its place; (4) ID loss (1 - identity cosine to the source face; no face: worst) and
    CLIP score (name replaced by --neutral). Without --shard the dataset is ranked and written at
    the end: manifest.jsonl (the kept triplets, read by 'faceid train'), summary.json and
    contact-sheet.png. A killed run re-run resumes where it stopped; one whose generation failed
    exits 1, and running it again retries what failed.
    """
    from ..jobs import parse_shard
    from ..selfaug.build import (
        BuildSettings,
        build as run_build,
        merge,
        read_edit_prompts,
        read_names,
        read_source_prompt,
    )
    from ..selfaug.rank import RULES

    if rule not in RULES:
        raise typer.BadParameter(f"'{rule}' is not one of {', '.join(RULES)}", param_hint="'--rule'")
    if keep <= 0:
        raise typer.BadParameter("must be above 0", param_hint="'--keep'")
    settings = BuildSettings(model=model, names=read_names(names), prompts=read_edit_prompts(prompts),
                             per_prompt=per_prompt, sources=sources, keep=keep, min_face=min_face, seed=seed,
                             batch_size=batch_size, steps=steps, guidance=guidance, clip=clip, neutral=neutral,
                             backend=backend, device=device, dtype=dtype, rule=rule,
                             source_prompt=read_source_prompt(source_prompt, names), allow_download=allow_download)
    index, count = parse_shard(shard)
    human = not json_output
    names_here = len(range(index, len(settings.names), count))
    total = names_here * (sources + per_prompt * len(settings.prompts)) * steps
    with interruptible("every finished image is kept; run the same command again to resume"), \
            progress_bar("Building", total=total, enabled=human) as advance:
        counts = run_build(out, settings, (index, count), on_step=advance, on_note=note if human else None)
    summary = merge(out) if count == 1 else None
    _show(out, counts, summary, json_output, count)
    if counts["failed_jobs"]:
        failed = len(counts["failed_jobs"])
        print_error(f"{failed} generation job{'s' if failed != 1 else ''} failed (the first: "
                    f"{next(iter(counts['failed_jobs'].values()))}); run the same command again to retry")
        raise typer.Exit(1)


@app.command("merge")
def merge_command(
    out: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="The folder the shards wrote.")],
    keep: Annotated[float | None, typer.Option("--keep", min=0.0, max=1.0, help="Fraction kept per prompt "
                                               "[default: the build's].")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help=RULE_HELP + " [default: the build's]")] = None,
    json_output: JsonOption = False,
) -> None:
    """Join the shards' scores, rank within each prompt, and write the dataset.

    The kept set depends only on the scores, never on how the work was sharded. Re-run with another
    --keep or --rule to re-filter without generating anything.
    """
    from ..selfaug.build import merge
    from ..selfaug.rank import RULES

    if rule is not None and rule not in RULES:
        raise typer.BadParameter(f"'{rule}' is not one of {', '.join(RULES)}", param_hint="'--rule'")
    _show(out, None, merge(out, keep, rule), json_output, 1)


def _show(out: Path, counts: dict | None, summary: dict | None, json_output: bool, shards: int) -> None:
    if json_output:
        print_json({"out": str(out), "counts": counts, "summary": summary})
        return
    console = stdout_console()
    if counts is not None:
        console.print(f"{counts['names']} names: {counts['sources_accepted']} with a source face; "
                      f"{counts['edited_images']} edited images")
    if summary is None:
        note(f"shard done; when every shard is, run 'faceid selfaug merge {out}'")
        return
    from rich.table import Table

    # the figures never wrap (each column as wide as its widest cell) and the prompt, last, takes
    # what is left: at 80 columns a prompt first squeezed every column into two-word lines
    table = Table(box=None, pad_edge=False, title=f"faceid selfaug: {summary['kept']} of {summary['edited']} kept "
                  f"({summary['rule']})", caption="ID loss and CLIP score: means over kept / rejected edits",
                  title_justify="left", caption_justify="left")
    for header in ("kept / edits", "no face", "ID loss", "CLIP"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("edit prompt", ratio=1)

    def pair(a, b, digits):
        return f"{'-' if a is None else format(a, f'.{digits}f')} / {'-' if b is None else format(b, f'.{digits}f')}"

    for prompt, row in summary["per_prompt"].items():
        table.add_row(f"{row['kept']} / {row['candidates']}", str(row["no_face"]),
                      pair(row["id_loss_kept"], row["id_loss_rejected"], 2), pair(row["clip_kept"], row["clip_rejected"], 3),
                      prompt)
    console.print(table)
    if summary["source_rejections"]:
        console.print("source faces rejected: " + ", ".join(f"{n} {r}" for r, n in summary["source_rejections"].items()))
    console.print(f"dataset in {out}: manifest.jsonl, summary.json, contact-sheet.png")
