"""Session fixtures: a tiny Llama the tests write, served by a real vLLM on the CPU."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import vllm_process
from vllm_process import VllmServer

from tokenfactory.catalog import Catalog, load_catalog
from tokenfactory.engines.openai_http import OpenAIEngine


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    # Session scope: the session's engine adapter and its HTTP client share one loop.
    return "asyncio"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return load_catalog()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model folder: random weights and an offline tokenizer, written by vLLM's venv."""
    root = tmp_path_factory.mktemp("vllm-model")
    model_dir = root / "tiny-llama"
    script = str(Path(__file__).with_name("tiny_llama.py"))
    vllm_process.run_in_vllm_venv([script, str(model_dir)], root / "write-model.log")
    return model_dir


@pytest.fixture(scope="session")
def vllm(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    """One vLLM server for the whole session (it takes about a minute to start)."""
    log = tmp_path_factory.mktemp("vllm-log") / "vllm.log"
    process, server = vllm_process.start(tiny_model, log)
    try:
        yield server
    finally:
        vllm_process.stop(process)


@pytest.fixture(scope="session")
async def engine(vllm: VllmServer, anyio_backend: str) -> AsyncIterator[OpenAIEngine]:
    """Our adapter, set up as the gateway sets it up for a `vllm` replica."""
    adapter = OpenAIEngine(
        "vllm", vllm.v1, vllm.model, send_priority=True, continue_final_message=True
    )
    await adapter.start()
    yield adapter
    await adapter.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """A failed test that used the server reports the end of the server's log too."""
    report = yield
    server = getattr(item, "funcargs", {}).get("vllm")
    if report.failed and isinstance(server, VllmServer):
        report.sections.append(("vLLM log (end)", vllm_process.log_tail(server.log)))
    return report
