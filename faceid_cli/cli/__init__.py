"""The ``faceid`` command: a thin shell over the library, one module per command group.

Only Typer is imported at start-up; each command imports what it needs when it runs, so
``faceid --help`` answers in a fraction of a second.
"""

from __future__ import annotations

from typing import Annotated

import typer

from .. import __version__
from . import batch, completion, evaluate, faces, generate, models, selfaug, train, world
from ._common import new_app

app = new_app(
    help="Generate images of a real person from one photo and a prompt, and the tools around it: "
    "face detection and comparison, identity files, batch jobs, training and evaluation.",
)
app.add_typer(faces.app)
app.add_typer(generate.app)
app.add_typer(batch.app)
app.add_typer(train.app)
app.add_typer(evaluate.app)
app.add_typer(selfaug.app)
app.add_typer(models.app)
app.add_typer(completion.app)
app.add_typer(world.app)


def _show_version(value: bool) -> None:
    if value:
        typer.echo(f"faceid {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_show_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the traceback of a failure (also FACEID_DEBUG=1).")
    ] = False,
) -> None:
    """faceid: identity-preserving image generation."""


def main() -> None:
    """Console-script entry point."""
    app(prog_name="faceid")
