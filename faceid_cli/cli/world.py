"""``faceid world``: the miniature identity world: re-train its models, render data sets, list
its celebrities."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ..world import BUILD_STEPS
from ._common import JsonOption, new_app, note, print_json, stdout_console, writable_folder

app = new_app(name="world", help="The miniature identity world: procedural people and models trained on "
              "them from scratch (build, render, names).")

POPULATIONS = ("celebrities", "crowd", "reconstruction", "recogniser", "backbone", "held_out")


def _complete(names):
    return lambda incomplete: [n for n in names if n.startswith(incomplete)]


@app.command()
def build(
    output: Annotated[Path | None, typer.Option("--output", "-o", file_okay=False, callback=writable_folder,
                                                help="Weights folder to write [default: the one faceid ships].")] = None,
    work_dir: Annotated[Path | None, typer.Option("--work-dir", file_okay=False, callback=writable_folder,
                                                  help="Cache of rendered pools and intermediate models "
                                                  "[default: ~/.cache/faceid/world-build].")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", autocompletion=_complete(BUILD_STEPS),
                                                   help="Re-train only these steps (repeatable): "
                                                   + ", ".join(BUILD_STEPS) + ".")] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A smoke build: every step, a few "
                                        "iterations each, meaningless weights (for testing the recipe).")] = False,
    measure: Annotated[bool, typer.Option("--measure/--no-measure", help="Measure the world's quality "
                                          "afterwards (summary.json).")] = True,
    json_output: JsonOption = False,
) -> None:
    """Re-train every model of the world from seeds (about 90 minutes on 2 CPU cores).

    Deterministic on a CPU: the same recipe gives the same weights. Steps in order: the
    evaluation recogniser, the face detector, the context classifier, the encoder's face ViT,
    the VAE, the world's CLIP, the text encoders, the world text-to-image model, then the M²
    encoder trained on it ('faceid train' with the world's config); each is written to its
    folder, then the world is measured into summary.json. world-xl (the SDXL-shaped
    model) is built only when --only names it: it does not fit the 20 MB the repository ships.
    """
    from ..errors import InvalidArgumentError
    from ..world import WEIGHTS_DIR
    from ..world.build import RECIPE, build as build_world, quick_recipe

    unknown = [s for s in only or [] if s not in BUILD_STEPS]
    if unknown:
        raise InvalidArgumentError(f"unknown build step '{unknown[0]}'", f"use one of: {', '.join(BUILD_STEPS)}")
    output = output or WEIGHTS_DIR
    work_dir = work_dir or Path.home() / ".cache" / "faceid" / "world-build"
    recipe = quick_recipe(RECIPE) if quick else RECIPE
    with _reporter(enabled=not json_output) as reporter:
        summary = build_world(output, recipe, only=only, work_dir=work_dir, report=reporter, measure=measure)
    if json_output:
        print_json(summary)
        return
    _print_summary(summary)
    note(f"weights written to {output}")


@app.command()
def measure(
    output: Annotated[Path | None, typer.Option("--output", "-o", file_okay=False, callback=writable_folder,
                                                help="Weights folder [default: the one faceid ships].")] = None,
    json_output: JsonOption = False,
) -> None:
    """Measure the world's quality (recogniser, detector, classifier, CLIP, text-to-image) into its
    summary.json, without training anything."""
    from ..world import weights_dir
    from ..world.build import measure as measure_world

    output = output or weights_dir()
    with _reporter(enabled=not json_output) as reporter:
        summary = measure_world(output, report=reporter)
    if json_output:
        print_json(summary)
        return
    _print_summary(summary)


@app.command()
def render(
    output: Annotated[Path, typer.Option("--output", "-o", file_okay=False, callback=writable_folder, help="Folder to write.")],
    population: Annotated[str, typer.Option("--population", autocompletion=_complete(POPULATIONS),
                                            help="Whose pictures: " + ", ".join(POPULATIONS) + ".")] = "held_out",
    identities: Annotated[int, typer.Option("--identities", "-n", min=1, help="How many people.")] = 20,
    per_identity: Annotated[int, typer.Option("--per-identity", "-k", min=1, help="Pictures of each.")] = 4,
    offset: Annotated[int, typer.Option("--offset", min=0, help="Skip the population's first people.")] = 0,
    context: Annotated[str | None, typer.Option("--context", help="Fix attributes, e.g. 'hat=red,glasses=none' "
                                                "(the rest stay random).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the pictures' contexts and poses.")] = 0,
    pairs: Annotated[bool, typer.Option("--pairs", help="Also write pairs.jsonl: editing triplets (one picture of "
                                        "a person as the face, another as the target, its caption with S*) in "
                                        "selfaug's manifest format, for 'faceid train' (data.triplets). Needs -k 2 "
                                        "or more.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Write a data set: PNG pictures, ground_truth.jsonl (identity, name, context, face box,
    five landmarks, caption) and metadata.jsonl (each picture's caption with S* for its person, in
    Hugging Face imagefolder's layout: what 'faceid train' reads with data.captions = "metadata")
    for people of one population.

    Populations are disjoint seed ranges: celebrities (known to the world's models by name),
    reconstruction (the encoder's training faces), recogniser and backbone (what those models
    trained on), held_out (people no model ever saw: use them to evaluate).
    """
    from ..errors import InvalidArgumentError
    from ..train.config import METADATA_NAMES
    from ..world.dataset import GROUND_TRUTH, PAIRS, parse_context, write_dataset, write_pairs

    if pairs and per_identity < 2:
        raise InvalidArgumentError(f"--pairs needs two pictures of each person, not -k {per_identity}",
                                   "add -k 2 (or more)")
    fixed = parse_context(context) if context else {}
    had_pairs = (output / PAIRS).is_file()
    records = write_dataset(output, population, identities, per_identity, offset=offset, fixed=fixed, seed=seed)
    triplets = write_pairs(output, records) if pairs else None
    if had_pairs and not pairs:
        note(f"removed {output / PAIRS}: it described the pictures this render replaced (add --pairs to write it anew)")
    if json_output:
        document = {"output": str(output), "images": len(records), "ground_truth": str(output / GROUND_TRUTH),
                    "captions": str(output / METADATA_NAMES[0])}
        if pairs:
            document.update(pairs=str(output / PAIRS), triplets=triplets)
        print_json(document)
        return
    note(f"{len(records)} pictures, {GROUND_TRUTH} and {METADATA_NAMES[0]} written to {output}"
         + (f"; {triplets} editing triplets in {PAIRS}" if pairs else ""))


@app.command()
def demo(
    output: Annotated[Path, typer.Option("--output", "-o", file_okay=False, callback=writable_folder, help="Folder to write.")] = Path("demo-out/world"),
    seed: Annotated[int, typer.Option("--seed", help="Seed of the first image.")] = 0,
) -> None:
    """Show the main job in the world, in one contact sheet: a reference picture of a person, then
    the world model's images of that person in contexts it never saw them in, each captioned with
    what the world's recogniser and context classifier find in it."""
    from ..world.demo import make_demo

    sheet = make_demo(output, seed=seed)
    stdout_console().print(str(sheet))


@app.command()
def names(
    count: Annotated[int | None, typer.Option("--count", min=1, help="How many [default: all the world's].")] = None,
) -> None:
    """Print the celebrities' names, one a line: the names file for 'faceid selfaug'."""
    from ..world.people import NUM_CELEBRITIES, celebrity_names

    for name in celebrity_names(count or NUM_CELEBRITIES):
        typer.echo(name)


class _reporter:
    """Progress bars on a terminal (one per step), log lines on stderr otherwise."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def __enter__(self):
        from ..world.recipes.common import Reporter
        from ._common import stderr_console

        console = stderr_console()
        self._bar = None
        if self.enabled and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
                TimeRemainingColumn

            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TimeElapsedColumn(), TimeRemainingColumn(), console=console)
            self._bar.start()
        self._task = None

        def task(name: str, total: int) -> None:
            if self._bar is not None:
                self._task = self._bar.add_task(name, total=total)

        def advance(count: int) -> None:
            if self._bar is not None and self._task is not None:
                self._bar.advance(self._task, count)

        def log(message: str) -> None:
            if self._bar is not None:
                self._bar.console.print(message, style="dim", markup=False, highlight=False)
            elif self.enabled:
                console.print(message, style="dim", markup=False, highlight=False)

        return Reporter(advance=advance, log=log, task=task)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False


def _print_summary(summary: dict) -> None:
    from rich.table import Table

    table = Table(box=None, pad_edge=False, title="the world")
    for column in ("model", "parameters", "seconds"):
        table.add_column(column)
    for name, metrics in summary.get("components", {}).items():
        parameters = metrics.get("parameters", "")
        if isinstance(parameters, list):
            parameters = " + ".join(f"{p:,}" for p in parameters)
        elif isinstance(parameters, int):
            parameters = f"{parameters:,}"
        table.add_row(name, str(parameters), str(summary.get("seconds", {}).get(name, "")))
    seconds = summary.get("seconds", {})
    if seconds:
        total = sum(seconds.values())
        if "measure_seconds" in summary:
            table.add_row("measurement", "", str(summary["measure_seconds"]))
            total += summary["measure_seconds"]
        # a partial build's total counts the steps it kept from earlier builds too: a whole build's time
        table.add_row("total", "", f"{total:.1f} ({total / 60:.1f} min)")
    console = stdout_console()
    console.print(table)
    quality = summary.get("quality")
    if quality:
        from ..world.quality import format_quality

        console.print(format_quality(quality), markup=False, highlight=False)
