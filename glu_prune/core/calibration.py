"""Calibration data and streaming activation statistics for data-driven neuron scores.

Two jobs, kept apart:

- *Token batches*: a :class:`CalibrationSource` yields documents (the tiny world's training
  corpus, a local text file, a list of strings, or a Hugging Face dataset); the documents
  are tokenized, packed into ``n_sequences`` sequences of ``seq_len`` tokens and split into
  batches, all fixed by a frozen :class:`CalibrationSettings` with a short stable ``tag``.
- *Statistics*: :func:`collect_stats` runs the model over the batches with a forward
  pre-hook on every ``mlp.down_proj`` and folds each batch's input ``h`` (``silu(gate) *
  up``, shape [batch, seq, d_ff]) into a fixed set of per-neuron sums, then drops it. Memory
  is O(d_ff) per layer however many batches run: activations are never stored.

The statistics feed :mod:`glu_prune.core.importance`'s calibration-based scorers and
:mod:`glu_prune.core.compensate`'s bias.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from tqdm.auto import tqdm

from glu_prune.core.prune import glu_mlps

LOG = logging.getLogger(__name__)


# ---------------------------------------------------------------- sources


class CalibrationSource(Protocol):
    """Where calibration text comes from: a short stable ``tag`` and its documents."""

    @property
    def tag(self) -> str: ...

    def documents(self, seed: int) -> Iterator[str]: ...


@dataclass(frozen=True)
class TinyCorpus:
    """The tiny world's training corpus: fresh documents from its generator.

    The training generator never emits a benchmark twin's item (``glu_prune.tiny.corpus``),
    so calibration text is training-like and held out from every evaluation.
    """

    # Offset from the world seed so calibration draws differ from the streams the models
    # were trained on (the generator uses world seed + 1 and + 2 for those).
    SEED_OFFSET: ClassVar[int] = 100

    @property
    def tag(self) -> str:
        return "tinycorpus"

    def documents(self, seed: int) -> Iterator[str]:
        from glu_prune.tiny import corpus, world

        return corpus.training_docs(sys.maxsize, seed=world.SEED + self.SEED_OFFSET + seed)


def _digest(data: bytes) -> str:
    """Eight hex digits of SHA-256: a content name for tags (never a machine path)."""
    return hashlib.sha256(data).hexdigest()[:8]


@dataclass(frozen=True)
class TextFile:
    """A local UTF-8 text file, used in order as one document (the seed does not apply)."""

    path: Path

    @functools.cached_property
    def tag(self) -> str:
        # named by content, so a changed file is a different calibration
        return f"file-{_digest(Path(self.path).read_bytes())}"

    def documents(self, seed: int) -> Iterator[str]:
        yield Path(self.path).read_text(encoding="utf-8")


@dataclass(frozen=True)
class Texts:
    """A list of strings, each a document, used in order (the seed does not apply)."""

    texts: tuple[str, ...]

    def __post_init__(self) -> None:
        if isinstance(self.texts, str):
            raise TypeError("Texts takes a sequence of strings, got one string; wrap it: "
                            "Texts((text,))")
        object.__setattr__(self, "texts", tuple(self.texts))

    @functools.cached_property
    def tag(self) -> str:
        return f"texts-{_digest(json.dumps(self.texts).encode())}"

    def documents(self, seed: int) -> Iterator[str]:
        yield from self.texts


@dataclass(frozen=True)
class HubDataset:
    """A Hugging Face dataset loaded with ``datasets.load_dataset``; documents shuffled by seed.

    Evaluation splits are refused: calibrating on a test split would tune the pruning to
    the data it is judged on.
    """

    name: str  # the tag
    path: str
    config: str | None = None
    split: str = "train"
    text_field: str = "text"
    data_files: str | tuple[tuple[str, str], ...] | None = None

    def __post_init__(self) -> None:
        if "test" in self.split:
            raise ValueError(f"calibration split {self.split!r} of {self.path} is an evaluation "
                             f"split; use a train or validation split")

    @property
    def tag(self) -> str:
        return self.name

    def documents(self, seed: int) -> Iterator[str]:
        import datasets

        files = dict(self.data_files) if isinstance(self.data_files, tuple) else self.data_files
        data = datasets.load_dataset(self.path, self.config, split=self.split, data_files=files)
        for row in data.shuffle(seed=seed):
            yield row[self.text_field]


# C4 (en, validation) as the real models' default: it is what Wanda, SparseGPT and FLAP
# calibrate on, and it is the domain of none of the suite's benchmarks (wikitext-2 train
# would flatter the wikitext perplexity test with in-domain statistics). One shard of the
# validation split (~40 MB), as those projects load it, not the whole corpus.
HUB_DATASETS: dict[str, HubDataset] = {
    "c4": HubDataset("c4", "allenai/c4", split="validation",
                     data_files=(("validation", "en/c4-validation.00000-of-00008.json.gz"),)),
}


def source_from_name(spec: str) -> CalibrationSource:
    """``tinycorpus``, a name in ``HUB_DATASETS``, or the path of a local text file."""
    if spec == "tinycorpus":
        return TinyCorpus()
    if spec in HUB_DATASETS:
        return HUB_DATASETS[spec]
    if Path(spec).is_file():
        return TextFile(Path(spec))
    raise ValueError(f"unknown calibration source {spec!r}; valid: tinycorpus, "
                     f"{', '.join(HUB_DATASETS)}, or the path of an existing text file")


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class CalibrationSettings:
    """Everything that decides the calibration batches, hence the statistics."""

    source: CalibrationSource = field(default_factory=lambda: HUB_DATASETS["c4"])
    n_sequences: int = 128
    seq_len: int = 2048
    # Part of the identity: optipfair's maw_hybrid sums per-batch norms. 8 x 2048 tokens
    # keep one layer's h in float32 at 0.5 GB for d_ff 8192: 3B bf16 fits a 24 GB GPU.
    batch_size: int = 8
    seed: int = 0
    chat_template: bool = False  # instruct models read text as a user turn of their template

    def __post_init__(self) -> None:
        for name, low in (("n_sequences", 1), ("seq_len", 2), ("batch_size", 1), ("seed", 0)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ValueError(f"calibration {name} must be an integer >= {low}, got {value!r}")

    @property
    def tag(self) -> str:
        """Short stable name, e.g. ``c-tinycorpus-n128-l2048-b8-s0`` (``-chat`` when templated)."""
        chat = "-chat" if self.chat_template else ""
        return (f"c-{self.source.tag}-n{self.n_sequences}-l{self.seq_len}"
                f"-b{self.batch_size}-s{self.seed}{chat}")


def settings_for(model_name: str, **overrides: Any) -> CalibrationSettings:
    """Default settings for a registered model: the tiny corpus (256-token sequences, the
    tiny models' training context) for the tiny models, C4 otherwise; the chat template for
    instruct models."""
    from glu_prune.catalog.models import get_model_spec

    spec = get_model_spec(model_name)
    tiny = spec.benchmark_set.startswith("tiny")
    defaults: dict[str, Any] = {"source": TinyCorpus() if tiny else HUB_DATASETS["c4"],
                                "chat_template": spec.instruct}
    if tiny:
        defaults["seq_len"] = 256
    return CalibrationSettings(**{**defaults, **overrides})


# ---------------------------------------------------------------- token batches


def _encode(doc: str, tokenizer: Any, chat: bool) -> list[int]:
    """One document's token ids: plain text ends with EOS; chat text is a templated user turn."""
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("chat_template=True but the tokenizer has no chat template")
        doc = tokenizer.apply_chat_template([{"role": "user", "content": doc}], tokenize=False)
        return tokenizer(doc, add_special_tokens=False)["input_ids"]  # the template has BOS
    ids = tokenizer(doc, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    return ids + ([eos] if isinstance(eos, int) else [])  # documents separated as in pretraining


def _token_stream(settings: CalibrationSettings, tokenizer: Any, need: int) -> list[int]:
    """At least ``need`` token ids from the source's documents, or all it has."""
    ids: list[int] = []
    for doc in settings.source.documents(settings.seed):
        if doc and doc.strip():
            ids.extend(_encode(doc, tokenizer, settings.chat_template))
        if len(ids) >= need:
            break
    return ids


def calibration_tokens(settings: CalibrationSettings, tokenizer: Any) -> torch.Tensor:
    """``[n_sequences, seq_len]`` token ids: the source's documents packed end to end.

    Plain text sequences start with BOS (every prompt the model sees does); templated text
    carries the template's own BOS at each document start.
    """
    if tokenizer is None:
        raise ValueError("calibration needs the model's tokenizer and none was loaded; pass "
                         "token batches to collect_stats instead")
    bos = tokenizer.bos_token_id if not settings.chat_template else None
    prefix = [bos] if isinstance(bos, int) else []
    per_seq = settings.seq_len - len(prefix)
    need = settings.n_sequences * per_seq
    stream = _token_stream(settings, tokenizer, need)
    if not stream:
        raise ValueError(f"calibration source {settings.source.tag!r} gave no text")
    if len(stream) < need:
        raise ValueError(f"calibration source {settings.source.tag!r} gave {len(stream)} tokens; "
                         f"{settings.n_sequences} sequences of {settings.seq_len} need {need}: "
                         f"give more text or lower n_sequences / seq_len")
    body = torch.tensor(stream[:need], dtype=torch.long).view(settings.n_sequences, per_seq)
    if prefix:
        body = torch.cat([torch.full((settings.n_sequences, 1), prefix[0]), body], dim=1)
    LOG.info("calibration %s: %d tokens", settings.tag, body.numel())
    return body


def calibration_batches(settings: CalibrationSettings, tokenizer: Any) -> list[torch.Tensor]:
    """The calibration sequences split into batches of ``settings.batch_size``."""
    return list(calibration_tokens(settings, tokenizer).split(settings.batch_size))


# ---------------------------------------------------------------- statistics


@dataclass(frozen=True)
class LayerStats:
    """Per-neuron statistics of one layer's ``down_proj`` input ``h`` over the calibration data.

    Sums across batches are float64 (a float32 sum of hundreds of thousands of tokens
    keeps too few digits where the terms cancel); ``batch_l2_sum`` stays float32 because
    optipfair accumulates it so.
    """

    tokens: int  # N, tokens seen
    sequences: int
    sum: torch.Tensor  # sum_t h_tj
    sum_abs: torch.Tensor  # sum_t |h_tj|
    sum_sq: torch.Tensor  # sum_t h_tj^2
    m2: torch.Tensor  # sum_t (h_tj - mean_j)^2, merged per batch (Chan et al.): no cancellation
    seq_abs_mean_sq: torch.Tensor  # sum over sequences of (mean_t |h_tj|)^2 (Minitron)
    batch_l2_sum: torch.Tensor  # sum over batches of ||h_{batch, j}||_2 (optipfair's X_d)

    @property
    def intermediate_size(self) -> int:
        return self.sum.numel()

    @property
    def mean(self) -> torch.Tensor:
        """mean_t h_tj (float64)."""
        return self.sum / self.tokens

    @property
    def var(self) -> torch.Tensor:
        """Population variance over tokens, Var_t h_tj (float64)."""
        return self.m2 / self.tokens

    def tensors(self) -> list[torch.Tensor]:
        """Every per-neuron tensor (each of length d_ff)."""
        return [self.sum, self.sum_abs, self.sum_sq, self.m2, self.seq_abs_mean_sq,
                self.batch_l2_sum]


class _Accumulator:
    """Running sums of one layer, updated in place from each batch's ``h``, which is then freed."""

    def __init__(self, d_ff: int, device: torch.device):
        def zeros(dtype: torch.dtype = torch.float64) -> torch.Tensor:
            return torch.zeros(d_ff, dtype=dtype, device=device)

        self.tokens = 0
        self.sequences = 0
        self.sum, self.sum_abs, self.sum_sq, self.m2 = zeros(), zeros(), zeros(), zeros()
        self.seq_abs_mean_sq = zeros()
        self.batch_l2_sum = zeros(torch.float32)  # float32, accumulated as optipfair does

    @torch.no_grad()
    def update(self, h: torch.Tensor) -> None:
        """Fold one batch ``[batch, seq, d_ff]`` in with reductions only."""
        x = h.detach().float()  # the one h-sized temporary, and none for a float32 model
        b, seq = x.shape[0], x.shape[1]
        n_a, n_b = self.tokens, b * seq
        var_b, mean_b = torch.var_mean(x, dim=(0, 1), correction=0)
        l2 = torch.linalg.vector_norm(x, 2, dim=(0, 1))  # optipfair's per-batch X_d norm
        seq_abs = torch.linalg.vector_norm(x, 1, dim=1).double()  # [batch, d_ff]
        # Chan et al.'s merge of (count, mean, M2): no E[h^2] - E[h]^2 cancellation
        delta = mean_b.double() - (self.sum / n_a if n_a else 0.0)
        self.m2.add_(var_b.double() * n_b + delta.square() * (n_a * n_b / (n_a + n_b)))
        self.sum.add_(mean_b.double() * n_b)
        self.sum_abs.add_(seq_abs.sum(0))
        self.sum_sq.add_(l2.double().square())
        self.seq_abs_mean_sq.add_((seq_abs / seq).square().sum(0))
        self.batch_l2_sum.add_(l2)
        self.tokens += n_b
        self.sequences += b

    def result(self) -> LayerStats:
        """The sums so far, on the CPU."""
        sums = (self.sum, self.sum_abs, self.sum_sq, self.m2, self.seq_abs_mean_sq,
                self.batch_l2_sum)
        return LayerStats(self.tokens, self.sequences, *(t.cpu() for t in sums))


def _check_batches(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Token batches must be non-empty 2-D integer tensors of in-vocabulary ids."""
    if len(batches) == 0:
        raise ValueError("no calibration batches: calibration-based methods need data")
    vocab = model.get_input_embeddings().num_embeddings
    max_len = getattr(model.config, "max_position_embeddings", None)
    for i, batch in enumerate(batches):
        if not isinstance(batch, torch.Tensor) or batch.dim() != 2 \
                or batch.dtype.is_floating_point or batch.dtype == torch.bool:
            raise ValueError(f"calibration batch {i} must be a 2-D integer tensor of token ids "
                             f"[batch, seq], got {getattr(batch, 'dtype', type(batch).__name__)} "
                             f"of shape {tuple(getattr(batch, 'shape', ()))}")
        if batch.numel() == 0:
            raise ValueError(f"calibration batch {i} is empty (shape {tuple(batch.shape)})")
        low, high = int(batch.min()), int(batch.max())
        if low < 0 or high >= vocab:
            raise ValueError(f"calibration batch {i} has token ids in [{low}, {high}], outside "
                             f"the model's vocabulary [0, {vocab - 1}]: wrong tokenizer?")
        if max_len is not None and batch.shape[1] > max_len:
            raise ValueError(f"calibration batch {i} has {batch.shape[1]} tokens per sequence; "
                             f"the model takes at most {max_len} (max_position_embeddings)")


@contextlib.contextmanager
def _hooked(mlps: list[nn.Module], accs: list[_Accumulator]) -> Iterator[None]:
    """Pre-hooks on each ``down_proj`` feeding its input to the accumulator, always removed."""
    handles = [m.down_proj.register_forward_pre_hook(lambda _mod, args, acc=a: acc.update(args[0]))
               for m, a in zip(mlps, accs)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def _check_finite(stats: list[LayerStats], names: list[str]) -> None:
    """NaN or inf activations make every statistic meaningless: name the first bad layer."""
    for i, (s, name) in enumerate(zip(stats, names)):
        if not all(bool(torch.isfinite(t).all()) for t in s.tensors()):
            raise ValueError(f"layer {i} ({name}): calibration activations contain NaN or inf "
                             f"(broken weights, or overflow in a low-precision dtype?)")


def collect_stats(model: nn.Module, batches: Sequence[torch.Tensor], *,
                  progress: bool = True) -> list[LayerStats]:
    """Run ``model`` over ``batches`` and return each GLU layer's :class:`LayerStats`.

    The model is not changed: hooks are removed and the train/eval mode restored, whatever
    happens. Bad batches fail before the first forward pass.
    """
    mlps = glu_mlps(model)
    _check_batches(model, batches)
    device = next(model.parameters()).device
    accs = [_Accumulator(m.down_proj.in_features, m.down_proj.weight.device) for m in mlps]
    was_training = model.training
    model.eval()
    try:
        with _hooked(mlps, accs), torch.no_grad():
            for batch in tqdm(batches, desc="calibration", unit="batch", disable=not progress,
                              mininterval=10):
                # logits of one position only: the hooks need h, not a [tokens, vocab] tensor
                model(input_ids=batch.to(device), use_cache=False, logits_to_keep=1)
    finally:
        model.train(was_training)
    stats = [a.result() for a in accs]
    names = {id(m): n for n, m in model.named_modules()}
    _check_finite(stats, [f"{names.get(id(m), '?')}.down_proj" for m in mlps])
    return stats


def calibrate(model: nn.Module, tokenizer: Any, settings: CalibrationSettings, *,
              progress: bool = True) -> list[LayerStats]:
    """Token batches from ``settings`` through ``model``: each GLU layer's statistics."""
    batches = calibration_batches(settings, tokenizer)
    LOG.info("calibrating on %s (%d batches)", settings.tag, len(batches))
    return collect_stats(model, batches, progress=progress)
