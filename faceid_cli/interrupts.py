"""Ctrl-C (and SIGTERM) held off across a few lines that must not be split, such as writing an
image and then its manifest line: a signal that lands between them is acted on right after, so
an interrupted run leaves every finished image recorded."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Run the block with SIGINT and SIGTERM held; after it, deliver the first one that came to the
    handler it was meant for (Ctrl-C's ``KeyboardInterrupt``, or whatever SIGTERM was set to do).
    Off the main thread (where signals cannot be handled) the block just runs."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, frame: received.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            # None: the handler was set outside Python; the default is the nearest we can restore
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)
    if received:
        signal.raise_signal(received[0])
