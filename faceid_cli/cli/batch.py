"""``faceid batch``: render many jobs from a file, resumable and shardable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ._common import (
    AllowDownloadOption,
    BackendOption,
    DetectionSizeOption,
    DeviceOption,
    DtypeOption,
    InsightfaceRootOption,
    JsonOption,
    MaxPixelsOption,
    PackOption,
    analyzer_options,
    finite,
    interruptible,
    new_app,
    note,
    one_of,
    print_error,
    print_json,
    progress_bar,
    stdout_console,
    writable_folder,
)
from .generate import (
    METHOD_NAMES,
    SCHEDULER_NAMES,
    EncoderOption,
    IdentityTokenOption,
    complete_method,
    complete_model,
    complete_scheduler,
)

from ..jobs import SETTINGS
from ..names import GENERATION_DEFAULTS as DEFAULTS
from ..names import GENERATION_LIMITS as LIMITS

app = new_app()

#: what a job gets when neither it, the command line nor the file's [defaults] say otherwise
BUILTIN_DEFAULTS = {**{k: v for k, v in DEFAULTS.items() if k in SETTINGS},
                    "encoder": None, "height": None, "width": None}


@app.command()
def batch(
    jobs_file: Annotated[str, typer.Argument(metavar="JOBS", help="Jobs file (.jsonl, .csv, .toml) or - for stdin.")],
    out: Annotated[Path, typer.Option("--out", "-o", file_okay=False, callback=writable_folder, help="Output folder (images and manifest).")] = Path("faceid-batch"),
    jobs_format: Annotated[str, typer.Option("--format", help="auto (from the suffix or content), jsonl, csv, toml.")] = "auto",
    shard: Annotated[str | None, typer.Option("--shard", metavar="I/N",
                                              help="Run only jobs whose index mod N is I (0 <= I < N); 'auto' reads "
                                              "RANK/WORLD_SIZE or SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List what would run, and what is already done.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Images rendered at once (jobs sharing "
                                            "model, size and settings are batched together).")] = 4,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")] = False,
    json_output: Annotated[bool, typer.Option("--json", help="Stream one JSON line per finished image (or failed "
                                              "job) on stdout.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", autocompletion=complete_model,
                                              help=f"Default model for jobs that name none [default: {DEFAULTS['model']}].")] = None,
    encoder: EncoderOption = None,
    method: Annotated[str | None, typer.Option("--method", autocompletion=complete_method, callback=one_of(METHOD_NAMES),
                                               help=f"Default method: {', '.join(METHOD_NAMES)} [default: {DEFAULTS['method']}].")] = None,
    num_images: Annotated[int | None, typer.Option("--num-images", "-n", min=LIMITS["num_images"][0], help=f"Default images per prompt [default: {DEFAULTS['num_images']}].")] = None,
    steps: Annotated[int | None, typer.Option("--steps", min=LIMITS["steps"][0], max=LIMITS["steps"][1], help=f"Default denoising steps [default: {DEFAULTS['steps']}].")] = None,
    guidance: Annotated[float | None, typer.Option("--guidance", min=LIMITS["guidance"][0], callback=finite, help=f"Default guidance [default: {DEFAULTS['guidance']}].")] = None,
    scheduler: Annotated[str | None, typer.Option("--scheduler", autocompletion=complete_scheduler,
                                                  callback=one_of(SCHEDULER_NAMES),
                                                  help=f"Default sampler: {', '.join(SCHEDULER_NAMES)} [default: {DEFAULTS['scheduler']}].")] = None,
    height: Annotated[int | None, typer.Option("--height", min=LIMITS["height"][0], help="Default height [default: the model's].")] = None,
    width: Annotated[int | None, typer.Option("--width", min=LIMITS["width"][0], help="Default width [default: the model's].")] = None,
    negative_prompt: Annotated[str | None, typer.Option("--negative-prompt", help="Default negative prompt.")] = None,
    identity_token: Annotated[str | None, typer.Option("--identity-token", help=f"Default identity word [default: {DEFAULTS['identity_token']}].")] = None,
    identity_start: Annotated[float | None, typer.Option("--identity-start", min=LIMITS["identity_start"][0], max=LIMITS["identity_start"][1], callback=finite, metavar="FRACTION",
                                                         help="Default share of the steps drawn before the "
                                                         "identity enters (see generate) [default: 0].")] = None,
    text_negative: Annotated[bool, typer.Option(
        "--text-negative", help="faceclip: by default, encode the negative prompt with the base's text encoders "
        "alone, not the release's negative branch (see generate).")] = False,
    device: DeviceOption = "auto",
    dtype: DtypeOption = "auto",
    allow_download: AllowDownloadOption = False,
    backend: BackendOption = "auto",
    insightface_root: InsightfaceRootOption = None,
    insightface_pack: PackOption = None,
    detection_size: DetectionSizeOption = None,
    max_pixels: MaxPixelsOption = None,
) -> None:
    """Render every job of a jobs file, loading each model once and encoding each face once.

    A job (one JSON line, CSV row or TOML [[jobs]] table) has a face (photo, list of photos, or
    identity file), a prompt or list of prompts, an optional output name, and any generate option
    by its long name with underscores (seed, num_images, steps, negative_prompt, ...). Images go to
    --out as NAME-SEED.png with a JSON sidecar; manifest.jsonl records every finished image and
    failed job. Re-running the same command after a kill does only what is missing. Exits 1 if any
    job failed (the others still run).
    """
    from ..batch import BatchRunner, Manifest, manifest_name, plan, prepare_resume
    from ..jobs import parse_shard, read_jobs, shard_jobs
    from ..locks import hold_output_lock
    from ..pipeline_faceid import FaceIDPipeline

    given = {"model": model, "encoder": str(encoder) if encoder else None, "method": method,
             "num_images": num_images, "steps": steps, "guidance": guidance, "scheduler": scheduler,
             "height": height, "width": width, "negative_prompt": negative_prompt, "identity_token": identity_token,
             "identity_start": identity_start, "text_negative": True if text_negative else None}
    jobs = read_jobs(jobs_file, jobs_format, defaults={k: v for k, v in given.items() if v is not None})
    shard_index, shard_count = parse_shard(shard)
    mine = shard_jobs(jobs, shard_index, shard_count)
    mine, items = plan(mine)
    if dry_run:
        _print_plan(mine, items, out, json_output)
        return
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / manifest_name((shard_index, shard_count))
    with hold_output_lock(manifest_path):  # a second run on the same manifest fails at once
        manifest = Manifest(manifest_path)
        pending, already = prepare_resume(out, items, manifest)
        human = not (quiet or json_output)
        if human:
            note(f"{len(mine)} job{'s' if len(mine) != 1 else ''}"
                 + (f" (shard {shard_index}/{shard_count} of {len(jobs)})" if shard_count > 1 else "")
                 + f", {len(items)} images: {already} already done, {len(pending)} to render")

        def load_pipeline(**kwargs):
            pipeline = FaceIDPipeline.from_model(
                kwargs["model"], encoder=kwargs["encoder"], method=kwargs["method"], device=device, dtype=dtype,
                allow_download=allow_download, face_backend=backend, identity_token=kwargs["identity_token"],
                method_options=kwargs["method_options"],
                analyzer_options=analyzer_options(insightface_root, insightface_pack, detection_size))
            if human:
                described = pipeline.describe()
                note(f"loaded {described['model']} on {described['device']} ({described['dtype']}), "
                     f"method {described['method']}")
            return pipeline

        def on_record(record):
            if json_output:
                print_json({**record, "out": str(out)})

        total_steps = sum(int(item.job.settings.get("steps", BUILTIN_DEFAULTS["steps"])) for item in pending)
        def how_far() -> str:
            done = sum(1 for r in manifest.records if r.get("status") == "ok")
            return f"{done} of {len(items)} images done; run the same command again to resume"

        with interruptible(how_far), progress_bar("Rendering", total=total_steps, enabled=human) as advance:
            runner = BatchRunner(out, manifest, defaults=BUILTIN_DEFAULTS, batch_size=batch_size,
                                 load_pipeline=load_pipeline, max_pixels=max_pixels, on_record=on_record,
                                 on_step=advance)
            summary = runner.run(mine, pending)
        summary.images_skipped = already
        if human:
            _print_summary(summary, out, manifest.path)
        if quiet:
            for error in summary.failed_jobs.values():
                print_error(error)
        elif not summary.ok:
            print_error(f"{len(summary.failed_jobs)} of {summary.jobs} jobs failed; see {manifest.path}")
        if not summary.ok:
            raise typer.Exit(1)


def _print_plan(jobs, items, out: Path, json_output: bool) -> None:
    from ..batch import preflight

    rows = [{"job": job.name, "line": job.line, "status": "invalid", "error": job.error}
            for job in jobs if job.error]
    for item in items:
        problem = preflight(item.job, BUILTIN_DEFAULTS)
        status = "done" if (out / item.file).is_file() else ("invalid" if problem else "todo")
        rows.append({"job": item.job.name, "prompt": item.prompt, "seed": item.seed, "file": item.file,
                     "status": status, **({"error": problem} if problem and status == "invalid" else {})})
    if json_output:
        for row in rows:
            print_json(row)
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("job", "prompt", "seed", "file", "status"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["job"], row.get("prompt") or row.get("error", ""), str(row.get("seed", "")),
                      row.get("file", ""), row["status"])
    stdout_console().print(table)
    problems = {row["job"]: row["error"] for row in rows if row.get("error") and row.get("prompt")}
    if problems:  # why the jobs above are invalid (a job that did not parse shows it in its row)
        reasons = Table("invalid job", "why", box=None, pad_edge=False)
        for name, error in problems.items():
            reasons.add_row(name, error)
        stdout_console().print(reasons)


def _print_summary(summary, out: Path, manifest_path: Path) -> None:
    from rich.table import Table

    console = stdout_console()
    console.print(f"{summary.images_written} images written, {summary.images_skipped} already there, "
                  f"{len(summary.failed_jobs)} of {summary.jobs} jobs failed; manifest: {manifest_path}")
    if summary.failed_jobs:
        table = Table("failed job", "error", box=None, pad_edge=False)
        for name, error in summary.failed_jobs.items():
            table.add_row(name, error)
        console.print(table)
