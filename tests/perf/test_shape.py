import pytest

from tokenfactory.catalog import Catalog
from tokenfactory.perf.shape import active_params, kv_elements_per_token, total_params


def test_parameter_counts_from_the_architecture_match_the_published_totals(
    catalog: Catalog,
) -> None:
    """Cross-checks every model row: a wrong layer count or size shows up here."""
    for m in catalog.models.values():
        assert total_params(m) / 1e9 == pytest.approx(m.total_params_b, rel=0.05), m.id


def test_active_parameters_of_moe_models_match_the_published_figures(catalog: Catalog) -> None:
    for m in catalog.models.values():
        if m.is_moe:
            assert active_params(m) / 1e9 == pytest.approx(m.active_params_b, rel=0.15), m.id
        assert active_params(m) <= total_params(m) + m.vocab_size * m.hidden_size


def test_kv_cache_per_token(catalog: Catalog) -> None:
    llama = catalog.model("llama-3.1-8b")  # 32 layers x 8 kv heads x 128 x (K and V)
    assert kv_elements_per_token(llama, 1000) == 32 * 8 * 128 * 2
    ds = catalog.model("deepseek-v3")  # MLA: 61 layers x (512 latent + 64 rope)
    assert kv_elements_per_token(ds, 1000) == 61 * 576
    oss = catalog.model("gpt-oss-120b")  # half the layers see only a 128-token window
    full = 36 * 8 * 64 * 2
    assert kv_elements_per_token(oss, 128) == full
    assert kv_elements_per_token(oss, 128_000) == pytest.approx(full / 2, rel=0.01)
