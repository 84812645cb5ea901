"""Write a tiny random-weight Llama and its tokenizer to a folder, for vLLM to serve.

Run with .venv-vllm's Python (it has torch, transformers and tokenizers, which the
project's venv does not): `python tiny_llama.py DIR`. Nothing is downloaded.

The vocabulary is one token per printable ASCII character (byte-level, no merges), so
generated text re-tokenizes to exactly the tokens that made it: a greedy continuation
of a reply's first characters must reproduce the rest of it, and a reply of N tokens is
N characters long. The output rows of the special tokens are zeroed, as the llama.cpp
tests do for control tokens: their logit is exactly 0 while some ordinary token's is
almost surely above it, so greedy decoding never emits EOS or a control token and
every reply runs to max_tokens.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

BOS, EOS, UNK, PAD = "<s>", "</s>", "<unk>", "<pad>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>")
SPECIALS = (UNK, BOS, EOS, PAD, *ROLES)
# The message text is written verbatim, so transformers can find it when it cuts the
# rendered chat after the final message (continue_final_message).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
SEED = 1234


def build_tokenizer() -> PreTrainedTokenizerFast:
    """Byte-level tokenizer over printable ASCII and newline, one token per character."""
    byte_chars = _byte_level_chars()
    vocab = {token: i for i, token in enumerate(SPECIALS)}
    for ch in byte_chars:
        vocab[ch] = len(vocab)
    core = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    # Prompts start with BOS as Llama's do; /tokenize without special tokens leaves it off.
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])]
    )
    core.add_special_tokens(list(SPECIALS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        additional_special_tokens=list(ROLES),
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


def _byte_level_chars() -> list[str]:
    """The byte-level symbols of the bytes of printable ASCII and of newline."""
    mapping = _bytes_to_unicode()
    return [mapping[b] for b in [10, *range(32, 127)]]


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte to symbol table, which the ByteLevel pre-tokenizer applies."""
    printable = [*range(33, 127), *range(161, 173), *range(174, 256)]
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def build_model(tokenizer: PreTrainedTokenizerFast) -> LlamaForCausalLM:
    """Two layers, random weights; special tokens' output rows zeroed."""
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        # Head size 32 (128 / 4): vLLM's CPU attention kernels take head sizes from 32 up.
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=16384,  # vLLM serves it with --max-model-len 16384
        # Five times the usual spread: the layers then mix the context enough for greedy
        # replies to wander over the vocabulary instead of repeating one character, and
        # the wide gaps between logits keep float rounding from flipping a choice.
        initializer_range=0.1,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False,  # so zeroing output rows leaves the inputs alone
        dtype="float32",
    )
    torch.manual_seed(SEED)
    model = LlamaForCausalLM(config)
    special_ids = tokenizer.convert_tokens_to_ids(list(SPECIALS))
    with torch.no_grad():
        model.lm_head.weight[special_ids] = 0.0
    return model.eval()


def main(out: Path) -> None:
    tokenizer = build_tokenizer()
    model = build_model(tokenizer)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
