"""Checks that run before any model is built, so a run that cannot finish fails at start.

lm-eval's ifeval scores responses with nltk's ``punkt_tab`` sentence tokenizer. lm-eval
tries to download it when the task is imported and, offline, carries on; the missing data
then fails the run inside scoring, after all generation is done. :func:`check_ifeval_resources`
looks for the data (and ifeval's packages) first, and tries the same download once.
"""

from __future__ import annotations

import importlib.util
import logging

LOG = logging.getLogger(__name__)

IFEVAL_PACKAGES: tuple[str, ...] = ("langdetect", "immutabledict", "nltk")
PUNKT_TAB_RESOURCE = "tokenizers/punkt_tab/english/"  # what ifeval's checks load
PUNKT_TAB_INSTALL = "python -m nltk.downloader punkt_tab"


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


def download_punkt_tab() -> bool:
    """Try nltk's own download of ``punkt_tab`` once; False when it cannot be had here."""
    import nltk

    try:
        return bool(nltk.download("punkt_tab", quiet=True, raise_on_error=False))
    except (OSError, ValueError) as exc:  # no network, no writable nltk_data folder
        LOG.info("nltk could not download punkt_tab: %s", exc)
        return False


def check_ifeval_resources(download: bool = True) -> None:
    """Raise :class:`PreflightError` unless lm-eval's ifeval can score here.

    Checks ifeval's packages, then nltk's ``punkt_tab`` data; missing data is downloaded
    once when ``download`` is true. The error is one line naming the install command.
    """
    missing = missing_packages()
    if missing:
        raise PreflightError(f"ifeval needs the Python package(s) {', '.join(missing)}, "
                             f"which are not installed; install them with: "
                             f"pip install {' '.join(IFEVAL_PACKAGES)}")
    if has_punkt_tab():
        return
    if download and download_punkt_tab() and has_punkt_tab():
        LOG.info("downloaded nltk's punkt_tab for ifeval")
        return
    raise PreflightError("ifeval needs nltk's punkt_tab data, which is not installed"
                         + (" and could not be downloaded" if download else "")
                         + f"; install it with: {PUNKT_TAB_INSTALL}")
