"""A signal inside ``interrupts_deferred`` waits for the block's end, then acts as it would have."""

from __future__ import annotations

import os
import signal

import pytest

from faceid_cli.interrupts import interrupts_deferred


def test_ctrl_c_inside_the_block_lets_it_finish_then_interrupts():
    # Python's own Ctrl-C handler, set here: a test run started in the background inherits SIGINT
    # ignored, and then Python installs none
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    finished = []
    try:
        with pytest.raises(KeyboardInterrupt):
            with interrupts_deferred():
                os.kill(os.getpid(), signal.SIGINT)
                finished.append("after the signal")
        assert finished == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is back
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_reaches_the_handler_it_was_meant_for():
    seen = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: seen.append(signum))
    try:
        with interrupts_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_quiet_block_raises_nothing():
    with interrupts_deferred():
        value = 1
    assert value == 1
