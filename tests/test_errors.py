from tokenfactory.errors import BadInput, ConfigError, TokenfactoryError, UnknownId


def test_unknown_id_suggests_nearest() -> None:
    e = UnknownId("GPU", "H100-SMX", ["H100-SXM", "H200-SXM", "B200", "MI300X"])
    assert e.suggestions[0] == "H100-SXM"
    assert "unknown GPU 'H100-SMX'" in e.message
    assert "did you mean H100-SXM" in e.message


def test_unknown_id_matches_by_substring_when_too_short_for_fuzzy() -> None:
    e = UnknownId("model", "405b", ["llama-3.1-405b", "llama-3.1-8b"])
    assert e.suggestions == ["llama-3.1-405b"]


def test_unknown_id_lists_valid_when_nothing_is_near() -> None:
    e = UnknownId("tier", "zzz", ["flex", "batch"])
    assert e.suggestions == []
    assert "valid: batch, flex" in e.message


def test_hierarchy_carries_openai_shape_fields() -> None:
    assert issubclass(UnknownId, BadInput) and issubclass(ConfigError, BadInput)
    assert issubclass(BadInput, TokenfactoryError)
    e = UnknownId("GPU", "x", ["y"], param="gpu")
    assert (e.status, e.type, e.code, e.param) == (404, "invalid_request_error", "not_found", "gpu")
    assert (BadInput.status, BadInput.type) == (400, "invalid_request_error")
