"""Architecture of the embedded tiny Llama (one place; the model registry imports it).

Same features as Llama-3.2: grouped-query attention, SwiGLU MLP with expansion
ratio 4 (like Llama-3.2-1B: 8192/2048), RMSNorm, RoPE, tied embeddings.
"""

from __future__ import annotations

# Special tokens get fixed ids so the config and the tokenizer agree.
SPECIAL_TOKENS: list[str] = [
    "<|pad|>",  # 0
    "<|begin_of_text|>",  # 1
    "<|end_of_text|>",  # 2
    "<|start_header_id|>",  # 3
    "<|end_header_id|>",  # 4
    "<|eot_id|>",  # 5
]
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
EOT_ID = 5

TINY_CONFIG: dict = dict(
    vocab_size=1280,  # the world's BPE learns ~1240 tokens; padded to a multiple of 64
    hidden_size=128,
    intermediate_size=512,  # expansion ratio 4.0, like Llama-3.2-1B
    num_hidden_layers=4,
    num_attention_heads=4,  # head_dim 32
    num_key_value_heads=2,  # grouped-query attention, 2 queries per kv head
    hidden_act="silu",
    max_position_embeddings=1024,
    rms_norm_eps=1e-5,
    rope_theta=10000.0,
    tie_word_embeddings=True,
    attention_bias=False,
    mlp_bias=False,
    pad_token_id=PAD_ID,
    bos_token_id=BOS_ID,
    eos_token_id=EOS_ID,
    initializer_range=0.02,
)
