"""A tiny random-weight llama GGUF that llama.cpp loads in a blink, for engine tests.

Its vocabulary is SentencePiece-style: <unk>, <s>, </s>, the 256 <0xXX> byte tokens and
one token per printable ASCII character (space spelled "▁"). It generates gibberish made
of printable characters only, so one generated token is one character.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

HIDDEN = 256
LAYERS = 2
HEADS = 4
KV_HEADS = 2  # grouped-query attention, as in the models the factory serves
FFN = 512
CONTEXT = 2048

# A ChatML-like template of our own (not llama-cpp-python's built-in ChatML string, so the
# server renders it with its Jinja formatter, the path real GGUF templates take).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<|{{ m['role'] }}|>{{ m['content'] }}<|end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def vocabulary() -> tuple[list[str], list[gguf.TokenType]]:
    """Token texts and types: controls, byte tokens, then printable characters."""
    tokens = ["<unk>", "<s>", "</s>"]
    types = [gguf.TokenType.UNKNOWN, gguf.TokenType.CONTROL, gguf.TokenType.CONTROL]
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [gguf.TokenType.BYTE] * 256
    tokens += ["▁"] + [chr(c) for c in range(0x21, 0x7F)]
    types += [gguf.TokenType.NORMAL] * (1 + 0x7F - 0x21)
    return tokens, types


def write_tiny_llama(path: Path, seed: int = 0) -> Path:
    """Write the tiny model to `path` and return it."""
    tokens, types = vocabulary()
    n_vocab = len(tokens)
    rng = np.random.default_rng(seed)

    def weight(*shape: int, scale: float = 0.02) -> np.ndarray:
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tokenfactory-tiny-llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HIDDEN // HEADS)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_scores([0.0] * n_vocab)
    writer.add_unk_token_id(0)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    # Without the SentencePiece space prefix, re-tokenizing generated text gives back
    # exactly the generated tokens, so token counts can be checked by tokenizing text.
    writer.add_add_space_prefix(False)
    writer.add_chat_template(CHAT_TEMPLATE)

    writer.add_tensor("token_embd.weight", weight(n_vocab, HIDDEN, scale=1.0))
    head_dim = HIDDEN // HEADS
    for i in range(LAYERS):
        blk = f"blk.{i}"
        writer.add_tensor(f"{blk}.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"{blk}.attn_q.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"{blk}.attn_k.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"{blk}.attn_v.weight", weight(KV_HEADS * head_dim, HIDDEN))
        writer.add_tensor(f"{blk}.attn_output.weight", weight(HIDDEN, HIDDEN))
        writer.add_tensor(f"{blk}.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
        writer.add_tensor(f"{blk}.ffn_gate.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"{blk}.ffn_up.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"{blk}.ffn_down.weight", weight(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    # Logits with a spread of about 8 make the best printable token win by a wide margin.
    output = weight(n_vocab, HIDDEN, scale=0.5)
    # Byte and control tokens get logit 0, far below the best printable one: a byte token
    # could start a partial UTF-8 sequence, and llama-cpp-python then skips its max_tokens
    # check and overruns; </s> never wins, so every generation runs to max_tokens.
    output[[i for i, t in enumerate(types) if t != gguf.TokenType.NORMAL]] = 0.0
    writer.add_tensor("output.weight", output)

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
