"""Calibration data: where the text comes from and how it becomes token batches.

A :class:`CalibrationSource` yields documents (the tiny world's training corpus, a local
text file, a list of strings, or a Hugging Face dataset); the documents are tokenized,
packed into ``n_sequences`` sequences of ``seq_len`` tokens and split into batches, all
fixed by a frozen :class:`CalibrationSettings` with a short stable ``tag``.

Running the model over the batches is :mod:`glu_prune.core.calibration`'s job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol

import torch

from glu_prune.catalog.models import MODELS
from glu_prune.tiny import corpus, world

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
    instruct models. A model the user brings (not registered) gets C4, no chat template."""
    spec = MODELS.get(model_name, None)
    tiny = spec is not None and spec.benchmark_set.startswith("tiny")
    defaults: dict[str, Any] = {"source": TinyCorpus() if tiny else HUB_DATASETS["c4"],
                                "chat_template": spec is not None and spec.instruct}
    if tiny:
        defaults["seq_len"] = 256
    return CalibrationSettings(**{**defaults, **overrides})


@dataclass(frozen=True)
class CalibrationFlag:
    """One calibration option, declared once: the pytest plugin adds it as
    ``--glu-calib-<name>``, the CLI as ``--calib-<name>``; both check and read it here."""

    name: str  # the option's suffix
    field: str  # the CalibrationSettings field it sets
    minimum: int | None  # integer options: the least valid value; None: the text source
    help: str

    def parse(self, value: Any, option: str) -> Any:
        """The field's value from the option's (None: not given); a ValueError names the
        option, the value and what is valid."""
        if value is None:
            return None
        if self.minimum is None:
            try:
                return source_from_name(str(value))
            except ValueError as exc:
                valid = str(exc).split("; valid: ")[-1]
                raise ValueError(f"{option}={value}: unknown source; valid: {valid}") from None
        if not isinstance(value, int) or isinstance(value, bool) or value < self.minimum:
            raise ValueError(f"{option}={value}: valid: an integer >= {self.minimum}")
        return value


def _flags() -> tuple[CalibrationFlag, ...]:
    d = CalibrationSettings()
    return (
        CalibrationFlag("source", "source", None,
                        "calibration text of data-driven methods: tinycorpus (the tiny "
                        "world's training generator), c4 (C4's English validation shard, "
                        "never an evaluation set) or a local text file (default: tinycorpus "
                        "for the tiny models, c4 otherwise; instruct models read it through "
                        "their chat template)"),
        CalibrationFlag("sequences", "n_sequences", 1,
                        f"calibration sequences (default: {d.n_sequences})"),
        CalibrationFlag("length", "seq_len", 2,
                        f"tokens per calibration sequence (default: {d.seq_len}; 256 for "
                        f"the tiny models, their training context)"),
        CalibrationFlag("batch-size", "batch_size", 1,
                        f"calibration sequences per forward pass; part of the identity, as "
                        f"maw_hybrid sums per-batch norms (default: {d.batch_size})"),
        CalibrationFlag("seed", "seed", 0,
                        f"seed of the calibration text's sampling (default: {d.seed})"),
    )


CALIBRATION_FLAGS: tuple[CalibrationFlag, ...] = _flags()


def calibration_overrides(value_of: Callable[[CalibrationFlag], Any],
                          option_of: Callable[[CalibrationFlag], str]) -> dict[str, Any]:
    """The CalibrationSettings fields the user gave, checked: ``value_of(flag)`` is the
    option's value (None: not given), ``option_of(flag)`` its spelling in messages."""
    out = {f.field: f.parse(value_of(f), option_of(f)) for f in CALIBRATION_FLAGS}
    return {k: v for k, v in out.items() if v is not None}


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
