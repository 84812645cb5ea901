"""Write fitted parameters back into the efficiency data file, keeping its comments."""

from __future__ import annotations

import re
from pathlib import Path

from tokenfactory.perf.model import Efficiency


def write_efficiency(path: Path, kind: str, eff: Efficiency, source: str) -> None:
    """Replace the `[engine.KIND]` table in `path` with fitted values."""
    text = path.read_text()
    table = (
        f"[engine.{kind}]\n"
        f"compute = {eff.compute:.4f}\n"
        f"memory = {eff.memory:.4f}\n"
        f"step_overhead_s = {eff.step_overhead_s:.6f}\n"
        f"seq_overhead_s = {eff.seq_overhead_s:.3e}\n"
        + ("" if eff.fp4_compute is None else f"fp4_compute = {eff.fp4_compute:.4f}\n")
        + (
            ""
            if eff.attention_compute is None
            else f"attention_compute = {eff.attention_compute:.4f}\n"
        )
        + ("" if not eff.dispatch_bytes else f"dispatch_bytes = {eff.dispatch_bytes:.2f}\n")
        + "".join(
            f"{name} = {value:.3e}\n"
            for name, value in (
                ("host_step_s", eff.host_step_s),
                ("eager_allreduce_s", eff.eager_allreduce_s),
            )
            if value
        )
        + f'source = "{source}"\n'
    )
    pattern = re.compile(rf"^\[engine\.{re.escape(kind)}\]\n(?:(?!\[).*\n?)*", re.MULTILINE)
    if pattern.search(text):
        text = pattern.sub(table + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + table
    path.write_text(text.rstrip("\n") + "\n")
