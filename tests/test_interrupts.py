"""A signal inside ``interrupts_deferred`` waits for the block's end, then acts as it would have;
and a command stopped by Ctrl-C or SIGTERM says so in one line, with how to go on, and exits 130."""

from __future__ import annotations

import os
import signal

import pytest

from faceid_cli.interrupts import interrupts_deferred

from .helpers import assert_one_line_error, run_cli


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


def _stopped(signum):
    def stop(*args, **kwargs):
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os.kill(os.getpid(), signum)  # a cluster pre-empting the job
        raise AssertionError("SIGTERM did not stop the command")

    return stop


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
@pytest.mark.parametrize("command,target,hint", [
    (["selfaug", "build", "--names", "world", "--model", "world"], "faceid_cli.selfaug.build.build",
     "run the same command again to resume"),
    (["evaluate", "--faces", "{face}", "--model", "world", "--prompts", "world"], "faceid_cli.evaluate.run.run_evaluation",
     "run the same command again to resume"),
    (["train", "--set", "model.base=world"], "faceid_cli.train.loop.train", "--resume latest"),
], ids=["selfaug", "evaluate", "train"])
def test_a_stopped_long_command_says_how_to_go_on_and_exits_130(monkeypatch, tmp_path, faces_dir, command, target,
                                                                 hint, signum):
    module, name = target.rsplit(".", 1)
    monkeypatch.setattr(__import__(module, fromlist=[name]), name, _stopped(signum))
    before = signal.getsignal(signal.SIGTERM)
    args = [part.format(face=faces_dir / "obama.jpg") for part in command]
    result = run_cli(*args, "-o", tmp_path / "out")
    assert_one_line_error(result, 130, "interrupted", hint)
    assert signal.getsignal(signal.SIGTERM) is before  # the command's SIGTERM handler is gone again


def test_any_command_stopped_by_ctrl_c_says_so(monkeypatch, faces_dir):
    import faceid_cli.faces

    monkeypatch.setattr(faceid_cli.faces, "load_analyzer", _stopped(signal.SIGINT))
    assert_one_line_error(run_cli("detect", faces_dir / "obama.jpg"), 130, "interrupted")

