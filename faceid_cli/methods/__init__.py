"""Identity methods (``--method``), one module each behind one small interface (:class:`Method`).

``FaceIDPipeline``, ``batch``, ``train``, ``selfaug`` and ``evaluate`` reach a method only through
:func:`get_method`. Adding a method is one module here plus its line in :data:`METHOD_MODULES` and
its name in :data:`faceid_cli.names.METHODS` (the light list the CLI completes from; a test keeps
the two equal).
"""

from __future__ import annotations

from importlib import import_module

from ..errors import InvalidArgumentError
from ..names import METHODS
#: method name → the module that defines it (as ``METHOD``)
METHOD_MODULES = {"m2": "m2", "clip-image": "clip_image", "none": "none", "faceclip": "faceclip"}


def get_method(name: str):
    """The :class:`~faceid_cli.methods.base.Method` called ``name``."""
    if name not in METHOD_MODULES:
        raise InvalidArgumentError(f"unknown method '{name}'", f"use one of: {', '.join(METHODS)}")
    return import_module(f"{__name__}.{METHOD_MODULES[name]}").METHOD


__all__ = ["METHOD_MODULES", "get_method"]
