"""``faceid train``: train the M² ID encoder on a frozen text-to-image model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    AllowDownloadOption,
    interruptible,
    new_app,
    note,
    print_json,
    progress_bar,
    stdout_console,
    writable_folder,
)

app = new_app()


@app.command()
def train(
    config_file: Annotated[Path | None, typer.Argument(metavar="CONFIG", exists=True, dir_okay=False,
                                                       help="A TOML config (see --print-config); "
                                                       "configs/ has the paper's, SDXL's and the world's.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", metavar="SECTION.KEY=VALUE",
                                                   help="Override one config value (repeatable), e.g. "
                                                   "--set train.steps=100.")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", file_okay=False, callback=writable_folder,
                                                help="Output folder (output.dir).")] = None,
    resume: Annotated[str | None, typer.Option("--resume", metavar="latest|CHECKPOINT",
                                               help="Continue from the newest complete checkpoint in the "
                                               "output folder, or from the one given.")] = None,
    report_to: Annotated[str | None, typer.Option("--report-to", metavar="tensorboard|wandb",
                                                  help="Also log metrics there (output.report_to; the "
                                                  "package must be installed).")] = None,
    print_config: Annotated[bool, typer.Option("--print-config", help="Print the resolved config (the "
                                                "defaults, the file and --set applied) and exit.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Print one JSON document at the end (metrics on "
                                              "stdout as JSON lines are in output/metrics.jsonl).")] = False,
    allow_download: AllowDownloadOption = False,
) -> None:
    """Train the M² ID encoder (DreamIdentity §3.2-3.4) on a frozen text-to-image model.

    The loss is the diffusion model's MSE through the pseudo-words S* (the same code generate uses)
    plus lambda * sum ||s_i||; the UNet, VAE and text encoders never change. Data: face photos
    (reconstruction; captions from templates, or with data.captions = "metadata" each photo's own
    from a metadata.jsonl or .csv beside it, Hugging Face imagefolder's layout, S* naming the
    person) and 'faceid selfaug' triplets, mixed at
    data.triplet_fraction; faces are detected, aligned and cached once. Checkpoints go to
    OUTPUT/checkpoints/step-N (encoder/ loads with 'faceid generate --encoder'); the final encoder
    to OUTPUT/encoder. Multi-GPU: 'accelerate launch -m faceid_cli train CONFIG'.
    model.method = "clip-image" trains the paper's CLIP baseline instead, "faceclip" a
    FaceCLIP-style joint ID-text encoder.
    """
    from ..train.config import dumps_toml, load_config

    overrides = list(set_ or [])
    if output is not None:
        overrides.append(f'output.dir="{output}"')
    if report_to is not None:
        overrides.append(f'output.report_to="{report_to}"')
    config = load_config(config_file, overrides)
    if print_config:
        typer.echo(dumps_toml(config), nl=False)
        return
    from ..train.loop import train as run

    human = not json_output

    def show(record: dict, advance) -> None:
        advance(f"loss {record['loss']:.4f}  {record['steps_per_s']:.2f} steps/s")

    with interruptible("go on from the last complete checkpoint with --resume latest"), \
            progress_bar("Training", total=config["train"]["steps"], enabled=human) as advance:
        result = run(config, resume=resume, on_step=lambda record: show(record, advance),
                     on_note=note if human else None, allow_download=allow_download)
    last = result.metrics[-1] if result.metrics else {}
    if json_output:
        print_json({"encoder": str(result.encoder_dir), "steps": result.steps, "data": result.data, "last": last})
        return
    stdout_console().print(f"encoder written to {result.encoder_dir} (step {result.steps}"
                           + (f", loss {last['loss']:.4f}" if last else "") + ")")
