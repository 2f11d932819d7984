"""Unit tier: no services. Each test gets settings from its own env file in a temp folder."""

import os
from pathlib import Path

import pytest

from lakehouse.settings import load_settings


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch, tmp_path):
    """No LAKEHOUSE_* variable from the caller's shell leaks into a unit test."""
    for key in list(os.environ):
        if key.startswith("LAKEHOUSE_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("LAKEHOUSE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("LAKEHOUSE_ENV_FILE", str(tmp_path / ".env"))


@pytest.fixture
def settings(tmp_path):
    return load_settings(Path(os.environ["LAKEHOUSE_ENV_FILE"]))
