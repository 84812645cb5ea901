"""The fitted parameters as data: read back exactly what calibrate writes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tokenfactory.errors import UnknownId
from tokenfactory.perf.efficiency import efficiency_for, efficiency_path, load_efficiencies
from tokenfactory.perf.model import Efficiency
from tokenfactory.perf.store import write_efficiency


def test_written_parameters_read_back_and_other_engines_keep_theirs(tmp_path: Path) -> None:
    path = tmp_path / "efficiency.toml"
    shutil.copy(efficiency_path(), path)
    before = load_efficiencies(path)
    fitted = Efficiency(
        0.55,
        0.9,
        2.5e-4,
        6.0e-6,
        fp4_compute=0.375,
        attention_compute=0.3,
        dispatch_bytes=42.5,
    )
    write_efficiency(path, "trtllm", fitted, "test fit")
    after = load_efficiencies(path)
    assert after["trtllm"] == fitted
    assert {k: v for k, v in after.items() if k != "trtllm"} == {
        k: v for k, v in before.items() if k != "trtllm"
    }
    assert path.read_text().startswith("# Achieved fractions")  # the comments survive
    # Without an FP4 fraction the table has none, and FP4 runs at the common fraction.
    write_efficiency(path, "trtllm", Efficiency(0.55, 0.9, 2.5e-4, 6.0e-6), "test fit")
    plain = efficiency_for("trtllm", path)
    assert plain.fp4_compute is None and plain.compute_at("fp4") == 0.55
    assert plain.dispatch_bytes == 0.0  # and MoE tokens cost only their FLOPs


def test_built_in_fp4_fraction_is_below_the_common_one() -> None:
    for kind in ("trtllm", "vllm", "sglang"):
        eff = efficiency_for(kind)
        assert eff.compute_at("fp4") < eff.compute_at("fp8") == eff.compute
    with pytest.raises(UnknownId):
        efficiency_for("trtlm")
