"""The ifeval preflight: nltk's punkt_tab data and ifeval's packages, checked before any model.

Missing data is simulated by pointing ``nltk.data.path`` at an empty folder; nltk's
download is replaced in every test, so none touches the network or ~/nltk_data.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glu_prune.evaluation import preflight
from glu_prune.evaluation.preflight import (PUNKT_TAB_INSTALL, PreflightError,
                                            check_ifeval_resources)

nltk = pytest.importorskip("nltk")


def _install_punkt_tab(root: Path) -> None:
    (root / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)


@pytest.fixture
def nltk_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty nltk data folder, the only one nltk searches."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    return tmp_path


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """nltk.download replaced by a recorder that fails (as offline); returns the calls."""
    calls: list[str] = []

    def offline(resource: str, **kwargs) -> bool:
        calls.append(resource)
        return False

    monkeypatch.setattr(nltk, "download", offline)
    return calls


def test_present_data_passes_without_download(nltk_root, downloads):
    _install_punkt_tab(nltk_root)
    check_ifeval_resources()
    assert downloads == []


def test_missing_data_not_downloadable_stops_with_the_install_command(nltk_root, downloads):
    with pytest.raises(PreflightError) as info:
        check_ifeval_resources()
    message = str(info.value)
    assert "\n" not in message
    assert "punkt_tab" in message and "could not be downloaded" in message
    assert message.endswith(f"install it with: {PUNKT_TAB_INSTALL}")
    assert downloads == ["punkt_tab"]


def test_no_download_when_told_not_to(nltk_root, downloads):
    with pytest.raises(PreflightError, match="python -m nltk.downloader punkt_tab"):
        check_ifeval_resources(download=False)
    assert downloads == []


def test_missing_data_that_downloads_passes(nltk_root, monkeypatch):
    def download(resource: str, **kwargs) -> bool:
        _install_punkt_tab(nltk_root)
        return True

    monkeypatch.setattr(nltk, "download", download)
    check_ifeval_resources()


def test_a_download_that_reports_success_but_leaves_no_data_fails(nltk_root, monkeypatch):
    monkeypatch.setattr(nltk, "download", lambda resource, **kwargs: True)
    with pytest.raises(PreflightError, match="punkt_tab"):
        check_ifeval_resources()


def test_a_download_that_raises_counts_as_not_obtainable(nltk_root, monkeypatch):
    def refuse(resource: str, **kwargs) -> bool:
        raise PermissionError("no writable nltk_data folder")

    monkeypatch.setattr(nltk, "download", refuse)
    assert preflight.download_punkt_tab() is False
    with pytest.raises(PreflightError, match="could not be downloaded"):
        check_ifeval_resources()


def test_missing_package_is_named_with_the_pip_command(nltk_root, downloads, monkeypatch):
    real_find_spec = preflight.importlib.util.find_spec
    monkeypatch.setattr(preflight.importlib.util, "find_spec",
                        lambda name: None if name == "langdetect" else real_find_spec(name))
    with pytest.raises(PreflightError) as info:
        check_ifeval_resources()
    message = str(info.value)
    assert "langdetect" in message and "immutabledict" not in message.split(";")[0]
    assert message.endswith("pip install langdetect immutabledict nltk")
    assert downloads == []  # packages are checked before any data


def test_ifeval_packages_are_main_dependencies():
    """``pip install glu-prune`` runs ifeval: its packages are not left to an extra."""
    tomllib = pytest.importorskip("tomllib")
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower() for d in deps}
    assert set(preflight.IFEVAL_PACKAGES) <= names
