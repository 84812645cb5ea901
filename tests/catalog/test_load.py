from pathlib import Path

import pytest

from tokenfactory.catalog import Catalog, load_catalog
from tokenfactory.errors import ConfigError, UnknownId

GPUS = {"A100-80GB", "H100-SXM", "H200-SXM", "B200", "GB200", "L40S", "MI300X", "MI325X", "MI355X"}
MODELS = {
    "llama-2-70b",
    "llama-3.1-8b",
    "llama-3.1-70b",
    "llama-3.3-70b",
    "llama-3.1-405b",
    "qwen2.5-7b",
    "qwen2.5-72b",
    "qwen3-8b",
    "qwen3-30b-a3b",
    "qwen3-235b-a22b",
    "deepseek-v3",
    "mixtral-8x7b",
    "gpt-oss-20b",
    "gpt-oss-120b",
    "smollm2-135m",
}


def test_builtin_catalog_has_every_required_entry(catalog: Catalog) -> None:
    assert set(catalog.gpus) == GPUS
    assert set(catalog.models) == MODELS
    assert set(catalog.tiers) == {"realtime", "standard", "flex", "batch"}


def test_every_figure_has_a_source(catalog: Catalog) -> None:
    for gpu in catalog.gpus.values():
        assert {"specs", "power", "rent", "purchase"} <= set(gpu.sources), gpu.id
    for model in catalog.models.values():
        assert {"config", "params", "price"} <= set(model.sources), model.id
    for tier in catalog.tiers.values():
        assert {"price_ratio", "objective", "patience_s"} <= set(tier.sources), tier.id
    energy_fields = set(type(catalog.energy).model_fields) - {"sources"}
    assert energy_fields <= set(catalog.energy.sources)
    every = [*catalog.gpus.values(), *catalog.models.values(), *catalog.tiers.values()]
    assert all(len(s) > 20 for row in every for s in row.sources.values())


def test_tier_price_ratios_are_two_one_half_half(catalog: Catalog) -> None:
    ratios = {t.id: float(t.price_ratio) for t in catalog.tiers.values()}
    assert ratios == {"realtime": 2.0, "standard": 1.0, "flex": 0.5, "batch": 0.5}
    assert [t.id for t in catalog.tiers.values() if t.preemptible] == ["flex", "batch"]
    assert catalog.tier("realtime").ttft_ms < catalog.tier("standard").ttft_ms


def test_gpu_facts_are_self_consistent(catalog: Catalog) -> None:
    for g in catalog.gpus.values():
        # Each halving of precision doubles dense tensor throughput on every part listed.
        if g.fp8_tflops:
            assert g.fp8_tflops == pytest.approx(2 * g.bf16_tflops, rel=0.03), g.id
        if g.fp4_tflops:
            assert g.fp8_tflops and g.fp4_tflops == pytest.approx(2 * g.fp8_tflops, rel=0.03)
        # All-in power exceeds the chip's own TDP: host, network and facility come on top.
        assert g.kw_per_gpu * 1000 > g.tdp_w, g.id


def test_tflops_falls_back_to_a_supported_precision(catalog: Catalog) -> None:
    a100, h100, b200 = catalog.gpu("A100-80GB"), catalog.gpu("H100-SXM"), catalog.gpu("B200")
    assert a100.tflops("fp8") == a100.bf16_tflops
    assert h100.tflops("fp4") == h100.fp8_tflops
    assert b200.tflops("fp4") == b200.fp4_tflops


def test_lookup_of_unknown_id_names_nearest(catalog: Catalog) -> None:
    with pytest.raises(UnknownId, match="did you mean H100-SXM"):
        catalog.gpu("H100-SMX")
    with pytest.raises(UnknownId, match=r"llama-3\.1-8b"):
        catalog.model("llama3.1-8b")
    assert catalog.entry("flex").id == "flex"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_user_file_overrides_one_field_and_keeps_the_rest(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[[gpu]]\nid = "H100-SXM"\nrent_per_gpu_hour = "1.95"\n'
        '[gpu.sources]\nrent = "my own contract with a neocloud, 2026"\n',
    )
    cat = load_catalog(path)
    h100 = cat.gpu("H100-SXM")
    assert str(h100.rent_per_gpu_hour) == "1.95"
    assert h100.sources["rent"] == "my own contract with a neocloud, 2026"
    assert h100.hbm_gb == 80 and "specs" in h100.sources
    assert load_catalog().gpu("H100-SXM").rent_per_gpu_hour != h100.rent_per_gpu_hour


def test_user_file_adds_an_entry(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        """
[[gpu]]
id = "RTX-PRO-6000"
name = "NVIDIA RTX PRO 6000 Blackwell Server Edition"
vendor = "nvidia"
bf16_tflops = 500
fp8_tflops = 1000
hbm_gb = 96
hbm_tb_s = 1.6
tdp_w = 600
scaleup_gb_s = 64
kw_per_gpu = 1.2
rent_per_gpu_hour = "1.0"
purchase_usd = 9000
[gpu.sources]
specs = "my datasheet"
""",
    )
    assert load_catalog(path).gpu("RTX-PRO-6000").hbm_gb == 96


def test_new_entry_missing_a_field_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '\n\n[[gpu]]\nid = "X1"\nname = "x"\n[gpu.sources]\na = "b"\n')
    with pytest.raises(ConfigError) as info:
        load_catalog(path)
    assert f"{path}:4: entry 'X1'" in info.value.message
    assert "Field required" in info.value.message


def test_malformed_toml_names_file_and_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[gpu]]\nid = "H100-SXM"\nrent_per_gpu_hour = \n')
    with pytest.raises(ConfigError, match=r"mine\.toml: not valid TOML: .*line 3"):
        load_catalog(path)


def test_misspelt_field_suggests_the_right_one(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[gpu]]\nid = "H100-SXM"\nrent_per_gpu_hr = 2\n')
    with pytest.raises(
        ConfigError, match="rent_per_gpu_hr: unknown field; did you mean 'rent_per_gpu_hour'"
    ):
        load_catalog(path)


def test_bad_value_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, '[[gpu]]\nid = "H100-SXM"\nhbm_gb = -80\n')
    with pytest.raises(ConfigError, match="hbm_gb: Input should be greater than 0"):
        load_catalog(path)


def test_unknown_table_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown table 'gpus'"):
        load_catalog(_write(tmp_path, '[[gpus]]\nid = "x"\n'))
    with pytest.raises(ConfigError, match="cannot read catalog file"):
        load_catalog(tmp_path / "absent.toml")
