"""Rebuild the tiny world from scratch: corpus, tokenizer, base and instruct weights."""

from __future__ import annotations

import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from glu_prune.tiny import MODEL_DIRS, corpus
from glu_prune.tiny.config import EOS_ID, EOT_ID, TINY_CONFIG
from glu_prune.tiny.tokenizer import train_tokenizer
from glu_prune.tiny.world import CITIES, make_people

log = logging.getLogger(__name__)

# 32 windows of 256 tokens a step. 64 x 128 (same tokens, 12 % faster) was tried for v3 and
# dropped: the model never sees positions past 128, so the 5-shot gsm8k prompts and the
# rolling wikitext windows fell apart (gsm8k 0.59 -> 0.01, wikitext ppl 3.9 -> 15.0)
SEQ_LEN = 256
BATCH = 32
STEPS = 2000  # with the corpus and the instruct stage, ~27 minutes on 2 CPU cores


def _token_stream(tok, texts: list[str]):
    """Concatenate documents as ``<bos> doc <eos>`` into one long id tensor."""
    import torch

    ids: list[int] = []
    for enc in tok(texts, add_special_tokens=True)["input_ids"]:
        ids.extend(enc + [EOS_ID])
    return torch.tensor(ids, dtype=torch.long)


def _chat_stream(tok, n: int):
    """Instruct conversations rendered with the chat template, as one id tensor."""
    import torch

    ids: list[int] = []
    for conv in corpus.chat_pairs(n):
        text = tok.apply_chat_template(conv, tokenize=False)
        ids.extend(tok(text, add_special_tokens=False)["input_ids"] + [EOS_ID])
    return torch.tensor(ids, dtype=torch.long)


def _param_groups(model, weight_decay: float) -> list[dict]:
    """Weight decay on trainable matrices, never on norms."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim == 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(model, streams: list, weights: list[float], steps: int, lr: float, seed: int,
        seq_len: int = SEQ_LEN, on_step: Callable[[int, float], bool] | None = None,
        batch: int = BATCH, device: str = "cpu") -> None:
    """AdamW with warmup + cosine decay on random windows drawn from ``streams``.

    ``on_step(done, loss)`` runs after every step (to save, probe or score long runs);
    returning True stops training there. ``device``: where the windows go (the model's).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(_param_groups(model, 0.1), lr=lr,
                            betas=(0.9, 0.95))
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    model.train()
    bar = tqdm(range(steps), desc="train", mininterval=10)
    for step in bar:
        rows = []
        for _ in range(batch):
            s = rng.choices(streams, weights)[0]
            i = int(torch.randint(0, len(s) - seq_len - 1, (1,), generator=g))
            rows.append(s[i:i + seq_len + 1])
        x = torch.stack(rows).to(device)
        loss = model(input_ids=x[:, :-1], labels=x[:, :-1].clone()).loss  # HF shifts labels
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
            log.info("step %d loss %.4f", step, loss.item())
        if on_step is not None and on_step(step + 1, loss.item()):
            break
    model.eval()


def save(model, tok, out: Path, eos_ids: list[int]) -> None:
    """Write weights (safetensors), config, generation config and tokenizer to ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    model.generation_config.eos_token_id = eos_ids
    model.generation_config.pad_token_id = tok.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)


def mask_names(texts: list[str]) -> list[str]:
    """Texts with people's and cities' names replaced, for training the tokenizer only.

    With the names in its training text, BPE gives each of the 200 names and 16 cities a
    token of its own; a first model trained that way could neither recall a fact nor copy
    a name from its context (those rare, exchangeable tokens' embeddings collapsed onto
    one another: mean cosine 0.74 for names, 0.90 for cities), while it copied digits
    perfectly. Unseen by the tokenizer, names split into frequent sub-word pieces, as rare
    names do in real tokenizers.
    """
    names = sorted([p.name for p in make_people()] + CITIES, key=len, reverse=True)
    pat = re.compile(r"\b(" + "|".join(names) + r")\b", re.IGNORECASE)
    return [pat.sub("someone", t) for t in texts]


def train_all(out: Path | None = None, steps: int = STEPS, n_docs: int = 200_000,
              instruct_steps: int = 200, seed: int = 0, checkpoint_dir: Path | None = None,
              ) -> dict[str, float]:
    """Build corpus, tokenizer, base model and instruct model; returns minutes per stage."""
    with _deterministic(seed):
        return _train_all(out, steps, n_docs, instruct_steps, seed, checkpoint_dir)


@contextmanager
def _deterministic(seed: int) -> Iterator[None]:
    """Fixed threads and deterministic kernels, so the same weights come out bit for bit
    on the same torch and CPU (float reductions split differently across thread counts);
    the caller's settings are restored after."""
    import torch

    threads, strict = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(strict)


def _saver(model, tok, folder: Path | None) -> Callable[[int, float], bool] | None:
    """``fit``'s ``on_step`` saving the model to ``folder`` every 100 steps (to probe long
    runs as they go); None without a folder."""
    if folder is None:
        return None

    def on_step(done: int, _loss: float) -> bool:
        if done % 100 == 0:
            save(model, tok, folder, [EOS_ID])
        return False

    return on_step


def _train_all(out: Path | None, steps: int, n_docs: int, instruct_steps: int, seed: int,
               checkpoint_dir: Path | None) -> dict[str, float]:
    from transformers import LlamaConfig, LlamaForCausalLM

    dirs = {k: (out / k if out else v) for k, v in MODEL_DIRS.items()}
    times: dict[str, float] = {}
    t0 = time.time()
    texts = list(tqdm(corpus.training_docs(n_docs), total=n_docs, desc="corpus", mininterval=10))
    tok = train_tokenizer(mask_names(texts[:30_000]))
    stream = _token_stream(tok, texts)
    times["corpus+tokenizer"] = (time.time() - t0) / 60
    log.info("corpus: %d docs, %d tokens", len(texts), len(stream))

    t0 = time.time()
    model = LlamaForCausalLM(LlamaConfig(**TINY_CONFIG))
    fit(model, [stream], [1.0], steps, lr=3e-3, seed=seed,
        on_step=_saver(model, tok, checkpoint_dir))
    save(model, tok, dirs["tiny-llama"], [EOS_ID])
    times["base"] = (time.time() - t0) / 60

    t0 = time.time()
    chat = _chat_stream(tok, 20_000)
    fit(model, [chat, stream], [0.7, 0.3], instruct_steps, lr=1e-3, seed=seed + 1)
    tok.eos_token = "<|eot_id|>"  # instruct turns end with <|eot_id|>, as in Llama-3 instruct
    save(model, tok, dirs["tiny-llama-instruct"], [EOS_ID, EOT_ID])
    times["instruct"] = (time.time() - t0) / 60
    return times
