"""A model's shape as the hardware sees it: parameters, FLOPs and KV-cache bytes per token.

Counts are derived from the architecture in the catalog (the published config), so they
also cross-check the catalog's published parameter totals.
"""

from __future__ import annotations

from tokenfactory.catalog import Model


def attention_params(m: Model) -> int:
    """Weights of one attention block (projections only; norms and biases are noise)."""
    if m.attention == "mla":
        nope = m.head_dim - m.qk_rope_head_dim
        q_proj = m.attention_heads * m.head_dim
        q = (
            m.hidden_size * m.q_lora_rank + m.q_lora_rank * q_proj
            if m.q_lora_rank
            else (m.hidden_size * q_proj)
        )
        kv_down = m.hidden_size * (m.kv_lora_rank + m.qk_rope_head_dim)
        kv_up = m.kv_lora_rank * m.attention_heads * (nope + m.v_head_dim)
        out = m.attention_heads * m.v_head_dim * m.hidden_size
        return q + kv_down + kv_up + out
    q_and_out = 2 * m.hidden_size * m.attention_heads * m.head_dim
    kv = 2 * m.hidden_size * m.kv_heads * m.head_dim
    return q_and_out + kv


def _ffn(hidden: int, intermediate: int) -> int:
    """A gated FFN: gate, up and down projections."""
    return 3 * hidden * intermediate


def ffn_params(m: Model, *, active_only: bool) -> int:
    """FFN weights of all layers, or only those a token passes through."""
    if not m.is_moe:
        return m.layers * _ffn(m.hidden_size, m.intermediate_size)
    moe_layers = m.layers - m.dense_layers
    routed = m.experts_active if active_only else m.experts
    per_moe_layer = (
        (routed + m.experts_shared) * _ffn(m.hidden_size, m.moe_intermediate_size)
        + m.hidden_size * m.experts  # the router
    )
    return m.dense_layers * _ffn(m.hidden_size, m.intermediate_size) + moe_layers * per_moe_layer


def embedding_params(m: Model) -> int:
    """Input embedding plus the output head when it is not tied to it."""
    return m.vocab_size * m.hidden_size * (1 if m.tied_embeddings else 2)


def total_params(m: Model) -> int:
    """Every weight of the model."""
    return embedding_params(m) + m.layers * attention_params(m) + ffn_params(m, active_only=False)


def active_params(m: Model) -> int:
    """Weights one token is multiplied by: attention, its experts and the output head."""
    head = m.vocab_size * m.hidden_size
    return head + m.layers * attention_params(m) + ffn_params(m, active_only=True)


def kv_elements_per_token(m: Model, context: int) -> float:
    """KV-cache elements one token of a `context`-long sequence holds, averaged.

    Sliding-window layers keep at most the window, so their share shrinks as the
    context grows; MLA caches one compressed latent and a rope key per layer.
    """
    if m.attention == "mla":
        return float(m.layers * (m.kv_lora_rank + m.qk_rope_head_dim))
    per_layer = 2 * m.kv_heads * m.head_dim
    full_layers = m.layers - m.sliding_window_layers
    windowed = m.sliding_window_layers * min(1.0, m.sliding_window / max(context, 1))
    return per_layer * (full_layers + windowed)
