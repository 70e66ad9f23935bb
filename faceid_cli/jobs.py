"""Jobs files for ``faceid batch``: JSON lines, CSV or TOML, read into validated Job records.

A job is a face (a photo, several photos of one person or a folder of them, or an identity file), one or more
prompts, an optional output name, and any ``generate`` option by its long name with underscores::

    {"face": "a.jpg", "prompt": "S* as a chef", "name": "chef-a", "seed": 3, "num_images": 2}
    {"face": ["a.jpg", "a2.jpg"], "prompt": ["S* as a chef", "S* as a nurse"]}
    {"face": "me.safetensors", "prompt": "oil painting of S*", "steps": 20}

CSV carries the same fields as columns (a cell holding a JSON list, ``["a.jpg", "b.jpg"]``, is a
list); TOML holds ``[[jobs]]`` tables and an optional ``[defaults]`` table. Relative paths are
relative to the jobs file (to the working folder for stdin). A job's problems (unknown field, bad
value, output name outside the output folder) make that job fail; the file as a whole is refused
only when it cannot be parsed at all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .errors import InvalidArgumentError

FORMATS = ("auto", "jsonl", "csv", "toml")
#: fields a job may set, and the type each value must have
SETTINGS = {
    "seed": int, "num_images": int, "steps": int, "guidance": float, "scheduler": str, "height": int,
    "width": int, "negative_prompt": str, "face_index": int, "model": str, "encoder": str, "method": str,
    "identity_token": str, "append_identity": bool, "identity_start": float, "text_negative": bool,
}
JOB_FIELDS = {"face", "prompt", "name", *SETTINGS}


@dataclass(frozen=True)
class Job:
    index: int  # 0-based position in the file: the key for sharding and default names
    line: int  # where it came from, for messages
    name: str
    faces: tuple[str, ...] = ()
    prompts: tuple[str, ...] = ()
    settings: dict = field(default_factory=dict)
    error: str | None = None  # set when the job is invalid; it is then recorded as failed

    def setting(self, key: str, default=None):
        return self.settings.get(key, default)


def default_seed(name: str) -> int:
    """A stable per-job seed when the job sets none: re-runs and resumes give the same images."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") % (2**31)


def read_jobs(source: str, fmt: str = "auto", defaults: dict | None = None) -> list[Job]:
    """Parse a jobs file (``-`` for stdin) into jobs, each validated on its own."""
    if fmt not in FORMATS:
        raise InvalidArgumentError(f"unknown jobs format '{fmt}'", f"use one of: {', '.join(FORMATS)}")
    if source == "-":
        text, base, suffix = sys.stdin.read(), Path.cwd(), ""
    else:
        path = Path(source)
        if not path.is_file():
            raise InvalidArgumentError(f"jobs file '{path}' does not exist", "check the path")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidArgumentError(f"cannot read jobs file '{path}': {exc}", "save it as UTF-8 text") from None
        base, suffix = path.resolve().parent, path.suffix.lower()
    fmt = _detect_format(text, suffix) if fmt == "auto" else fmt
    raw_jobs, file_defaults = {"jsonl": _parse_jsonl, "csv": _parse_csv, "toml": _parse_toml}[fmt](text, source)
    # precedence: a job's own fields, then the command line, then the file's [defaults]
    merged_defaults = {**file_defaults, **(defaults or {})}
    jobs = [_validate(index, line, raw, merged_defaults, base) for index, (line, raw) in enumerate(raw_jobs)]
    return _mark_duplicate_names(jobs)


def _detect_format(text: str, suffix: str) -> str:
    by_suffix = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".toml": "toml"}
    if suffix in by_suffix:
        return by_suffix[suffix]
    first = next((line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")), "")
    if first.startswith("{"):
        return "jsonl"
    if first.startswith("[") or "=" in first:
        return "toml"
    return "csv"


def _parse_jsonl(text: str, source: str):
    jobs = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            value = json.loads(stripped)
        except json.JSONDecodeError as exc:
            value = {"__error__": f"line {number} is not valid JSON ({exc.msg})"}
        if not isinstance(value, dict):
            value = {"__error__": f"line {number} is not a JSON object"}
        jobs.append((number, value))
    return jobs, {}


def _parse_csv(text: str, source: str):
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "face" not in reader.fieldnames or "prompt" not in reader.fieldnames:
        raise InvalidArgumentError(f"jobs file '{source}' has no 'face' and 'prompt' columns",
                                   "start the CSV with a header row: face,prompt,name,...")
    jobs = []
    for row in reader:
        values = {}
        for key, cell in row.items():
            if key is None or cell is None or cell == "":
                continue
            cell = cell.strip()
            if cell.startswith("["):
                try:
                    values[key] = json.loads(cell)
                    continue
                except json.JSONDecodeError:
                    pass
            values[key] = cell
        jobs.append((reader.line_num, values))
    return jobs, {}


def _parse_toml(text: str, source: str):
    import tomllib

    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidArgumentError(f"jobs file '{source}' is not valid TOML: {exc}", "fix the file") from None
    jobs = document.get("jobs")
    if not isinstance(jobs, list):
        raise InvalidArgumentError(f"jobs file '{source}' has no [[jobs]] tables", "add [[jobs]] entries")
    defaults = document.get("defaults", {})
    if not isinstance(defaults, dict):
        raise InvalidArgumentError(f"[defaults] in '{source}' must be a table", "write [defaults] then key = value")
    return [(i + 1, job) for i, job in enumerate(jobs)], defaults


def _validate(index: int, line: int, raw: dict, defaults: dict, base: Path) -> Job:
    name = str(raw.get("name") or f"job-{index:05d}")
    try:
        if "__error__" in raw:
            raise ValueError(raw["__error__"])
        unknown = sorted(set(raw) - JOB_FIELDS)
        if unknown:
            raise ValueError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                             f"(known: face, prompt, name, {', '.join(SETTINGS)})")
        name = check_output_name(name)
        faces = _strings(raw.get("face"), "face")
        prompts = _strings(raw.get("prompt"), "prompt")
        if not faces:
            raise ValueError("no 'face' (a photo, a list of photos, or an identity file)")
        if not prompts:
            raise ValueError("no 'prompt'")
        settings = {}
        for key, value in {**defaults, **{k: v for k, v in raw.items() if k in SETTINGS}}.items():
            if key not in SETTINGS:
                raise ValueError(f"unknown default '{key}'")
            settings[key] = _check_limits(key, _coerce(key, value))
        faces = tuple(str((base / face) if not Path(face).is_absolute() else Path(face)) for face in faces)
        if "encoder" in settings and not Path(settings["encoder"]).is_absolute():
            settings["encoder"] = str(base / settings["encoder"])
        return Job(index, line, name, faces, tuple(prompts), settings)
    except ValueError as exc:
        return Job(index, line, name, error=f"job '{name}' (line {line}): {exc}")


def check_output_name(name: str) -> str:
    """Output names are relative paths inside the output folder: no absolute paths, no '..'."""
    if not name or "\\" in name or "\x00" in name:
        raise ValueError(f"output name {name!r} is not usable")
    path = PurePosixPath(name)
    if path.is_absolute() or Path(name).is_absolute() or ".." in path.parts or name.startswith("~"):
        raise ValueError(f"output name {name!r} would leave the output folder; use a relative name without '..'")
    if any(part.startswith(".") for part in path.parts):
        raise ValueError(f"output name {name!r} must not start with '.'")
    return str(path)


def _strings(value, key: str) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, list) else [value]
    if not all(isinstance(v, str) and v.strip() for v in values):
        raise ValueError(f"'{key}' must be a non-empty string or a list of them")
    return [v.strip() for v in values] if key == "face" else list(values)


def _check_limits(key: str, value):
    """A numeric field must be finite and within :data:`~faceid_cli.names.GENERATION_LIMITS`."""
    from .names import GENERATION_LIMITS

    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"'{key}' must be a finite number, got {value}")
    low, high = GENERATION_LIMITS.get(key, (None, None))
    if (low is not None and value < low) or (high is not None and value > high):
        bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ValueError(f"'{key}' must be {bounds}, got {value}")
    return value


def _coerce(key: str, value):
    kind = SETTINGS[key]
    try:
        if kind is bool:
            if isinstance(value, str):
                if value.lower() in ("true", "1", "yes"):
                    return True
                if value.lower() in ("false", "0", "no", ""):
                    return False
                raise ValueError
            return bool(value)
        if kind is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if kind is float:
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise ValueError(f"'{key}' must be {kind.__name__}, got {value!r}") from None


def _mark_duplicate_names(jobs: list[Job]) -> list[Job]:
    seen: dict[str, int] = {}
    result = []
    for job in jobs:
        if job.error is None and job.name in seen:
            job = Job(job.index, job.line, job.name, error=(
                f"job '{job.name}' (line {job.line}): the name is already used by the job on line "
                f"{seen[job.name]}; give each job its own name"))
        elif job.error is None:
            seen[job.name] = job.line
        result.append(job)
    return result


def parse_shard(value: str | None) -> tuple[int, int]:
    """``i/n`` (0 <= i < n) → (i, n); ``auto`` reads the launcher's environment."""
    import os

    if value in (None, ""):
        return 0, 1
    if value == "auto":
        for rank, size in (("RANK", "WORLD_SIZE"), ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT"),
                           ("SLURM_PROCID", "SLURM_NTASKS")):
            if os.environ.get(rank) and os.environ.get(size):
                return parse_shard(f"{os.environ[rank]}/{os.environ[size]}")
        return 0, 1
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise InvalidArgumentError(f"--shard {value!r} is not I/N", "e.g. --shard 0/4 for the first of four") from None
    if count < 1 or not 0 <= index < count:
        raise InvalidArgumentError(f"--shard {value}: need 0 <= I < N", "shards are numbered 0 to N-1")
    return index, count


def shard_jobs(jobs: list[Job], index: int, count: int) -> list[Job]:
    """Job k belongs to shard k mod N: exact, disjoint, and stable for a given file."""
    return [job for job in jobs if job.index % count == index]
