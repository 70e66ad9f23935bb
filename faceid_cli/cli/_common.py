"""What every command shares: one-line errors and exit codes, common options, output helpers.

Nothing here imports numpy, Pillow, torch or a face backend: ``faceid --help`` must stay fast.
"""

from __future__ import annotations

import errno
import json
import logging
import math
import os
import signal
import sys
import traceback
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from typer.core import TyperGroup

from ..config import DEBUG_ENV, FACE_BACKEND_ENV, INSIGHTFACE_ROOT_ENV, MAX_PIXELS_ENV
from ..names import DTYPES
from ..names import FACE_BACKENDS as BACKEND_NAMES
from ..names import INSIGHTFACE_PACKS

T = TypeVar("T")
COMPLETE_VAR = "_FACEID_COMPLETE"
SHELLS = ("bash", "zsh", "fish")


def _debug_requested(args: list[str]) -> bool:
    return "--debug" in args or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


class _WarningLine(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sys.stderr.write(f"{record.levelname.capitalize()}: {_one_line(record.getMessage())}\n")


def configure_logging(debug: bool) -> None:
    """faceid's warnings as one ``Warning: ...`` line on stderr; the model libraries' chatter
    (set through their environment variables, so nothing is imported here) only with --debug."""
    logger = logging.getLogger("faceid_cli")
    if not any(isinstance(h, _WarningLine) for h in logger.handlers):
        logger.addHandler(_WarningLine())
    logger.setLevel(logging.DEBUG if debug else logging.WARNING)
    logger.propagate = False
    level = "info" if debug else "error"
    for variable in ("TRANSFORMERS_VERBOSITY", "DIFFUSERS_VERBOSITY"):
        os.environ.setdefault(variable, level)
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")


def print_error(message: str) -> None:
    """``Error: ...`` on stderr, on one line."""
    sys.stderr.write(f"Error: {_one_line(message)}\n")
    sys.stderr.flush()


class FaceIDGroup(TyperGroup):
    """Runs the commands and turns every failure into one line on stderr and the spec's exit code.

    0 success; 1 the work failed on valid arguments (library ``FaceIDError``, unexpected errors);
    2 invalid invocation (usage errors, ``InvalidArgumentError``); 130 interrupted. ``--debug`` (or
    ``FACEID_DEBUG=1``) adds the traceback.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        from ..errors import FaceIDError

        argv = list(sys.argv[1:] if args is None else args)
        debug = _debug_requested(argv)
        configure_logging(debug)
        if COMPLETE_VAR in os.environ:
            # a shell asking for completions (completions/ scripts): register Typer's shell classes,
            # which it only does itself when it adds its --install-completion options
            from typer._completion_classes import completion_init

            completion_init()
        try:
            result = super().main(
                args=argv, prog_name=prog_name, complete_var=complete_var,
                standalone_mode=False, **extra,
            )
            code = result if isinstance(result, int) else 0
        except FaceIDError as exc:
            self._show(debug, str(exc))
            code = exc.exit_code
        except typer.TyperException as exc:  # click's usage errors: bad option, missing file, ...
            where = getattr(getattr(exc, "ctx", None), "command_path", None) or "faceid"
            hint = f" (see '{where} --help')" if getattr(exc, "exit_code", 1) == 2 else ""
            self._show(debug, exc.format_message() + hint)
            code = exc.exit_code
        except typer.Abort:
            self._show(debug, "aborted")
            code = 130
        except KeyboardInterrupt:
            self._show(debug, "interrupted")
            code = 130
        except BrokenPipeError:
            # `faceid detect ... | head`: the reader left; exit quietly like other shell tools.
            sys.stderr = open(os.devnull, "w")
            code = 1
        except OSError as exc:
            # disk full, permission denied, a path that is gone: the machine's refusal, not a bug
            described = describe_os_error(exc)
            self._show(debug, described or f"unexpected {type(exc).__name__}: {exc} (run with --debug for the "
                       "traceback and please report it)")
            code = 1
        except Exception as exc:  # a bug: still one line, the traceback behind --debug
            self._show(debug, f"unexpected {type(exc).__name__}: {exc} (run with --debug for the "
                       "traceback and please report it)")
            code = 1
        if standalone_mode:
            sys.exit(code)
        return code

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None and not getattr(option, "_faceid_plain", False):
            # Typer coerces an absent flag's value through pydantic, whose import costs ~130 ms;
            # `faceid CMD --help` would pay it for the root's unused --help. A flag is a bool.
            def process_value(ctx, value, option=option):
                value = bool(value)
                return option.callback(ctx, option, value) if option.callback else value

            option.process_value = process_value
            option._faceid_plain = True
        return option

    @staticmethod
    def _show(debug: bool, message: str) -> None:
        if debug and sys.exc_info()[0] is not None:
            traceback.print_exc()
        print_error(message)

    def invoke(self, ctx):
        from ..errors import RunInterruptedError

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            # Typer would turn it into a silent exit 130: say it, as every stop is said
            raise RunInterruptedError("interrupted") from None


def _stop_like_ctrl_c(signum, frame):
    raise KeyboardInterrupt


@contextmanager
def interruptible(hint: str | Callable[[], str]) -> Iterator[None]:
    """Ctrl-C, and SIGTERM like it (a cluster pre-empting the job), stop the block with one line,
    ``Error: interrupted; HINT`` (a callable hint is asked at that moment), and exit code 130."""
    import threading

    from ..errors import RunInterruptedError

    # signal handlers can be set on the main thread only (the CLI's; not a caller's worker thread)
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _stop_like_ctrl_c) if main else None
    try:
        yield
    except KeyboardInterrupt:
        raise RunInterruptedError("interrupted", hint() if callable(hint) else hint) from None
    finally:
        if main:  # None: a handler set outside Python; the default is the nearest to restore
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def new_app(**kwargs) -> typer.Typer:
    """A Typer app with faceid's settings (used for the root and every command group)."""
    kwargs.setdefault("no_args_is_help", True)
    # Completion scripts ship in completions/ (Typer's --install-completion options cost start-up).
    kwargs.setdefault("add_completion", False)
    kwargs.setdefault("pretty_exceptions_enable", False)
    # Plain click help: rewrapped paragraphs, literal [brackets], and no rich import at start-up.
    kwargs.setdefault("rich_markup_mode", None)
    kwargs.setdefault("context_settings", {"help_option_names": ["-h", "--help"]})
    return typer.Typer(cls=FaceIDGroup, **kwargs)


def complete_backend(incomplete: str) -> list[str]:
    return [name for name in BACKEND_NAMES if name.startswith(incomplete)]


def complete_pack(incomplete: str) -> list[str]:
    return [name for name in INSIGHTFACE_PACKS if name.startswith(incomplete)]


def complete_dtype(incomplete: str) -> list[str]:
    return [name for name in DTYPES if name.startswith(incomplete)]


def one_of(names: tuple[str, ...]):
    """An option callback refusing values outside ``names`` (a usage error, exit 2); a repeatable
    option's values are checked each."""

    def check(value):
        for one in (value if isinstance(value, list) else [value]):
            if one is not None and one not in names:
                raise typer.BadParameter(f"'{one}' is not one of {', '.join(names)}")
        return value

    return check


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def finite(value):
    """An option callback refusing NaN and infinity, which click's ranges let through (exit 2)."""
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if item is not None and not math.isfinite(item):
            raise typer.BadParameter(f"{item} is not a finite number")
    return value


def writable_folder(value: Path | None) -> Path | None:
    """An option callback for an output folder: refuse, before any model loads, a path under a file
    or inside a folder this user cannot write (a usage error, exit 2)."""
    if value is None:
        return value
    _check_folder(Path(value), Path(value))
    return value


def writable_file(value: Path | None) -> Path | None:
    """An option callback for an output file: its folder must be one :func:`writable_folder` accepts."""
    if value is not None:
        _check_folder(Path(value).parent, Path(value))
    return value


def _check_folder(folder: Path, given: Path) -> None:
    found = _nearest_existing(folder)
    if not found.is_dir():
        raise typer.BadParameter(f"'{given}': '{found}' is a file, not a folder")
    if not os.access(found, os.W_OK | os.X_OK):
        raise typer.BadParameter(f"'{given}': cannot write in '{found}' (permission denied); "
                                 "choose a folder you can write to")


#: what to do about the operating system's refusals that are no bug of faceid's (errno → hint)
_OS_ERROR_HINTS = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EACCES: "check its permissions or use another path",
    errno.EPERM: "check its permissions or use another path",
    errno.EROFS: "the file system is read-only; use another path",
    errno.ENOENT: "check the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder; check the path",
    errno.EISDIR: "it is a folder; give a file",
    errno.ENAMETOOLONG: "use a shorter name",
    errno.EMFILE: "too many open files; raise the limit (ulimit -n)",
    errno.EIO: "the disk reported an error",
}


def describe_os_error(exc: OSError) -> str | None:
    """One line for an operating-system refusal naming a file (disk full, permission denied, ...),
    or None for an OSError that is not one."""
    hint = _OS_ERROR_HINTS.get(exc.errno)
    if hint is None or exc.filename is None:
        return None
    where = f"'{exc.filename}'" + (f" -> '{exc.filename2}'" if exc.filename2 else "")
    return f"{exc.strerror or os.strerror(exc.errno)}: {where}; {hint}"


# Options shared by the commands that look at faces.
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")
]
BackendOption = Annotated[
    str,
    typer.Option(
        "--backend", envvar=FACE_BACKEND_ENV, callback=one_of(BACKEND_NAMES),
        autocompletion=complete_backend,
        help="Face backend: insightface (local SCRFD + ArcFace pack), dlib (works offline out of "
        "the box), world (the miniature world's detector and recogniser), or auto: world for the "
        "world's models, else insightface when its pack is found, else dlib.",
    ),
]
InsightfaceRootOption = Annotated[
    Path | None,
    typer.Option(
        "--insightface-root", envvar=INSIGHTFACE_ROOT_ENV, file_okay=False,
        help="Folder holding insightface packs (default ~/.insightface/models).",
    ),
]
PackOption = Annotated[
    str | None,
    typer.Option(
        "--insightface-pack", autocompletion=complete_pack,
        help="insightface pack to use: antelopev2 or buffalo_l (default: the first found).",
    ),
]
MaxPixelsOption = Annotated[
    int | None,
    typer.Option(
        "--max-pixels", envvar=MAX_PIXELS_ENV, min=1,
        help="Refuse images larger than this many pixels before decoding them [default: 50000000].",
    ),
]
DetectionSizeOption = Annotated[
    int | None,
    typer.Option(
        "--detection-size", min=64,
        help="Long side the detector sees; larger finds smaller faces, slower "
        "[default: dlib 1024, insightface 640].",
    ),
]

# Options shared by the commands that load a model.
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (cuda if present, else cpu), cpu, cuda, cuda:N.")
]
DtypeOption = Annotated[
    str,
    typer.Option(
        "--dtype", callback=one_of(DTYPES), autocompletion=complete_dtype,
        help="Weights' precision: auto (bf16, or fp16 where bf16 is missing, on cuda; fp32 on cpu), fp32, fp16, bf16.",
    ),
]
AllowDownloadOption = Annotated[
    bool,
    typer.Option(
        "--allow-download",
        help="Download a missing model from the Hugging Face Hub (without it models are looked up offline).",
    ),
]


def analyzer_options(insightface_root, insightface_pack, detection_size, model: str | None = None):
    from ..faces.analyzer import AnalyzerOptions

    return AnalyzerOptions(
        insightface_root=insightface_root,
        insightface_pack=insightface_pack,
        detection_size=detection_size,
        model=model,
    )


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def stdout_console():
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)


def stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def note(message: str) -> None:
    """A human remark on stderr (which backend, where files went); never on stdout."""
    stderr_console().print(message, style="dim", markup=False)


@contextmanager
def progress_bar(description: str, total: int, *, enabled: bool = True) -> Iterator[Callable[[], None]]:
    """Yield an ``advance(info="")`` callable that moves a progress bar on an interactive terminal;
    ``info`` (e.g. "loss 0.123, 2.1 steps/s") is shown after the bar."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield lambda info="": None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=console, transient=True) as bar:
        task = bar.add_task(description, total=total, info="")

        def advance(info: str = "") -> None:
            bar.update(task, advance=1, info=info)

        yield advance


def progress(items: Iterable[T], description: str, *, total: int | None = None,
             enabled: bool = True) -> Iterator[T]:
    """Iterate with a progress bar on an interactive terminal (stderr); plain iteration otherwise."""
    console = stderr_console()
    if not enabled or not console.is_terminal:
        yield from items
        return
    from rich.progress import track

    yield from track(items, description=description, total=total, console=console, transient=True)
