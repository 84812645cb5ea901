"""Engine fixtures: a tiny llama model the tests write, served by llama.cpp for the session."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tiny_gguf import write_tiny_llama

from tokenfactory.engines.llamacpp import EmbeddedLlamaCpp

CONTEXT = 512


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope: the session's engine and its HTTP client live on one event loop.
    return "asyncio"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("gguf") / "tiny-llama.gguf")


@pytest.fixture(scope="session")
async def llama(tiny_model: Path, anyio_backend: str) -> AsyncIterator[EmbeddedLlamaCpp]:
    engine = EmbeddedLlamaCpp(tiny_model, n_ctx=CONTEXT)
    await engine.start()
    yield engine
    await engine.stop()
