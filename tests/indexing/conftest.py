"""Fixtures the indexing tests share; each module sets its own `settings`."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa.settings import Settings
from qa.store import VectorStore, faiss_store


@pytest.fixture
def store(settings: Settings) -> VectorStore:
    """A real, empty FAISS store in the settings' index folder."""
    return faiss_store(settings.index_dir, create=True)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """An empty folder for the test's articles."""
    path = tmp_path / "corpus"
    path.mkdir()
    return path
