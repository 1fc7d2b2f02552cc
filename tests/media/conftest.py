"""Media fixtures: a generated 3-second clip, an in-memory ledger, a moto server, fast settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.media import MemoryLedger, make_clip


@pytest.fixture(scope="session")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4")


@pytest.fixture
def ledger() -> MemoryLedger:
    return MemoryLedger()


@pytest.fixture(scope="session")
def clip_bytes(clip: Path) -> bytes:
    return clip.read_bytes()
