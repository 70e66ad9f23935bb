"""Shared fixtures. Every test runs with user state isolated: a temporary HOME, no FACEID_*
variables from the developer's shell, and an empty insightface folder, so ``--backend auto``
means dlib unless a test builds a pack."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
FACES = DATA / "faces"


@pytest.fixture(autouse=True)
def isolated_user_state(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in list(os.environ):
        if name.startswith("FACEID_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("FACEID_INSIGHTFACE_ROOT", str(home / "no-insightface-packs"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    yield home


@pytest.fixture(scope="session")
def faces_dir() -> Path:
    return FACES


@pytest.fixture(scope="session")
def dlib_analyzer():
    from faceid_cli.faces.backend_dlib import DlibAnalyzer

    return DlibAnalyzer()
