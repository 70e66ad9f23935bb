"""Typed errors of the library.

Every error the library raises on purpose is a :class:`FaceIDError`: it carries the process exit
code of the spec and a hint that says what to do. The CLI prints ``Error: <message>; <hint>`` on
one line and exits with ``exit_code``; library users catch the class they care about.
"""

from __future__ import annotations


class FaceIDError(Exception):
    """Base class: the work failed on valid arguments (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


class InvalidArgumentError(FaceIDError):
    """An argument or option value is invalid (exit code 2, like a usage error)."""

    exit_code = 2


class ImageError(FaceIDError):
    """An image file is missing, unreadable, corrupt, not an image, or too large."""


class NoFaceError(FaceIDError):
    """No face was found where one was needed."""


class FaceIndexError(FaceIDError):
    """``--face-index`` asks for a face the photo does not have."""


class BackendUnavailableError(FaceIDError):
    """A face-analysis backend cannot be used here (package or model files missing)."""


class OutputInUseError(FaceIDError):
    """Another run holds the lock on the output this run would write."""


class RunInterruptedError(FaceIDError):
    """Ctrl-C, or SIGTERM (a cluster's pre-emption), stopped the run; the hint says how to go on."""

    exit_code = 130


class OutOfMemoryError(FaceIDError):
    """The device (GPU, or the machine's RAM on a CPU) had no memory for the work asked; the hint
    says what to lower. Raised for one batch, which the caller may split and retry."""


class MissingModelError(BackendUnavailableError):
    """Model files that must be present locally are not there (faceid never downloads silently)."""
