"""Byte-level BPE tokenizer of the tiny world, trained with ``tokenizers``."""

from __future__ import annotations

from collections.abc import Iterable

from glu_prune.tiny.config import BOS_ID, SPECIAL_TOKENS, TINY_CONFIG

# Llama-3 style chat template (header tokens, <|eot_id|> closes each turn).
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}"
    "<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n{{ m['content'] | trim }}<|eot_id|>"
    "{% endfor %}{% if add_generation_prompt %}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


def train_tokenizer(texts: Iterable[str], vocab_size: int = TINY_CONFIG["vocab_size"]):
    """Train a byte-level BPE on ``texts``; returns a ``PreTrainedTokenizerFast``.

    Like Llama-3's tokenizer it prepends ``<|begin_of_text|>`` when encoding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # single digits make the arithmetic learnable (Llama-3 groups up to 3 digits)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    bos = SPECIAL_TOKENS[BOS_ID]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, BOS_ID)])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token="<|end_of_text|>",
        pad_token="<|pad|>", model_max_length=TINY_CONFIG["max_position_embeddings"])
    fast.chat_template = CHAT_TEMPLATE
    return fast
