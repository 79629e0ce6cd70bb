"""A quiet console: library progress bars and chatter silenced, one progress line per
(variant, benchmark).

lm-eval draws its own tqdm bars (task building, every request type, bootstrap) and passes
``disable=False`` explicitly, so neither ``TQDM_DISABLE`` nor the libraries' own switches
(``transformers.utils.logging.disable_progress_bar``, ``datasets.disable_progress_bars``,
``HF_HUB_DISABLE_PROGRESS_BARS``, read once at import) reach all of them. Every one of them
is a ``tqdm.std.tqdm`` (or a subclass), so ``quiet_libraries`` forces ``disable=True`` in
that class's constructor while it is active. The bars a library meant to show are not
lost: the open ``ProgressLine`` follows them, so its one line shows the stage and count.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import io
import logging
import sys
from typing import Any, Callable, Iterable, Iterator, TextIO

from tqdm import std as tqdm_std

LOG = logging.getLogger(__name__)

# Loggers whose INFO lines are noise around an evaluation (lm-eval logs every task it
# builds; the others log downloads and loading). Warnings still pass.
QUIET_LOGGERS: tuple[str, ...] = ("lm_eval", "transformers", "datasets", "huggingface_hub",
                                  "accelerate", "evaluate")
# tqdm's constructor arguments in order (after self): disable and desc may come by position
_TQDM_ARGS = list(inspect.signature(tqdm_std.tqdm.__init__).parameters)[1:]
_DISABLE_INDEX = _TQDM_ARGS.index("disable")
_OPEN_LINES: list[ProgressLine] = []  # the open lines, innermost last
_quiet_depth = 0  # nesting of quiet_libraries (the patch is installed once)
_original_init: Any = None  # tqdm's own __init__ while patched


# ---------------------------------------------------------------- silencing


def _argument(args: tuple, kwargs: dict[str, Any], name: str) -> Any:
    """The value of tqdm's argument ``name`` in a call, ``None`` when not given."""
    index = _TQDM_ARGS.index(name)
    return args[index] if len(args) > index else kwargs.get(name)


def _forced_off(args: tuple, kwargs: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
    """``tqdm(...)``'s arguments with ``disable=True`` wherever the caller put it."""
    if len(args) > _DISABLE_INDEX:
        return args[:_DISABLE_INDEX] + (True,) + args[_DISABLE_INDEX + 1:], kwargs
    return args, {**kwargs, "disable": True}


def _quiet_init(original: Callable[..., None]) -> Callable[..., None]:
    """``tqdm.__init__`` that turns every bar off except a ``ProgressLine``; a bar its
    caller wanted shown is handed to the open line to follow."""

    @functools.wraps(original)
    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(self, ProgressLine):
            original(self, *args, **kwargs)
            return
        wanted = not _argument(args, kwargs, "disable")  # None (auto) counts as shown
        desc = _argument(args, kwargs, "desc")
        args, kwargs = _forced_off(args, kwargs)
        original(self, *args, **kwargs)
        if wanted and _OPEN_LINES:
            _OPEN_LINES[-1].follow(self, desc)
    return init


@contextlib.contextmanager
def silence_tqdm() -> Iterator[None]:
    """Turn off every tqdm bar created inside the block (``ProgressLine`` excepted).

    Process-wide while it lasts (a class attribute): a bar another thread opens meanwhile
    is silenced too. Nested blocks share one patch; the outermost puts tqdm back as it was.
    """
    global _quiet_depth, _original_init
    if _quiet_depth == 0:
        _original_init = tqdm_std.tqdm.__dict__["__init__"]  # as stored (a partialmethod)
        tqdm_std.tqdm.__init__ = _quiet_init(tqdm_std.tqdm.__init__)
    _quiet_depth += 1
    try:
        yield
    finally:
        _quiet_depth -= 1
        if _quiet_depth == 0:
            tqdm_std.tqdm.__init__ = _original_init
            _original_init = None


@contextlib.contextmanager
def quiet_loggers(names: Iterable[str] = QUIET_LOGGERS,
                  level: int = logging.WARNING) -> Iterator[None]:
    """Raise the named loggers to at least ``level`` inside the block, then restore them
    (a logger already stricter stays as it is)."""
    loggers = [logging.getLogger(name) for name in names]
    before = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), level))
    try:
        yield
    finally:
        for lg, old in zip(loggers, before):
            lg.setLevel(old)


class _DebugLog(io.TextIOBase):
    """A text stream that logs each complete line at DEBUG (for libraries that print)."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self._logger, self._pending = logger, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            if line.strip():
                self._logger.debug("%s", line)
        return len(text)

    def flush(self) -> None:
        if self._pending.strip():
            self._logger.debug("%s", self._pending)
        self._pending = ""


@contextlib.contextmanager
def quiet_libraries(verbose: bool = False) -> Iterator[None]:
    """Silence library progress bars, INFO logs and prints (lm-eval prints "bootstrapping
    for stddev") inside the block; with ``verbose`` change nothing.

    Prints go to this module's logger at DEBUG, so a failing test's captured log keeps them.
    """
    if verbose:
        yield
        return
    sink = _DebugLog(LOG)
    with silence_tqdm(), quiet_loggers(), contextlib.redirect_stdout(sink):
        try:
            yield
        finally:
            sink.flush()


# ---------------------------------------------------------------- one line per benchmark


class _Counted:
    """An iterable that advances ``line`` after each item it yields (a followed bar that
    is iterated rather than updated)."""

    def __init__(self, iterable: Iterable[Any], line: ProgressLine, bar: Any) -> None:
        self._iterable, self._line, self._bar = iterable, line, bar

    def __iter__(self) -> Iterator[Any]:
        for item in self._iterable:
            yield item
            self._line.advance(self._bar, 1)

    def __len__(self) -> int:
        return len(self._iterable)  # type: ignore[arg-type]


class ProgressLine(tqdm_std.tqdm):
    """One line for one (variant, benchmark): the stage and count of the library bar it
    follows while running, then ``<label>: <note> [elapsed]``.

    On a terminal it redraws in place; elsewhere (a CI log, a file) it writes only the
    final line, so a log grows by one line per benchmark, not by every redraw.
    """

    def __init__(self, label: str, file: TextIO | None = None) -> None:
        file = file if file is not None else sys.stderr
        self.live = bool(getattr(file, "isatty", lambda: False)())
        # miniters=1: a fixed count, so tqdm's monitor thread never redraws a held line
        super().__init__(desc=label, file=file, leave=True, dynamic_ncols=self.live,
                         miniters=1, delay=0 if self.live else float("inf"))
        self.following: Any = None
        self.note = "done"

    def follow(self, bar: Any, desc: str | None = None) -> None:
        """Show ``bar``'s progress (a library bar turned off; ``desc`` its label) here.

        Not ``reset()``: that restarts the clock and draws, and the elapsed time of the
        final line is the whole benchmark's.
        """
        self.following = bar
        self.total, self.n, self.last_print_n = bar.total, 0, 0
        self.set_postfix_str(str(desc or "preparing").rstrip(": "), refresh=self.live)
        bar.update = functools.partial(self.advance, bar)
        if bar.iterable is not None:
            bar.iterable = _Counted(bar.iterable, self, bar)

    def advance(self, bar: Any, n: float = 1) -> None:
        """Count ``n`` steps of ``bar`` if it is still the one this line follows."""
        if bar is self.following:
            self.update(n)

    def finish(self, note: str) -> None:
        """Set the text of the final line (a result, "from the cache", a failure)."""
        self.note = note

    def close(self) -> None:
        """Draw the final line once (also where intermediate draws were held back)."""
        if self.disable:  # closed already
            return
        note = self.note.replace("{", "{{").replace("}", "}}")  # bar_format is a format string
        self.bar_format = "{desc}: " + note + " [{elapsed}]"
        self.delay = 0  # tqdm skips the last draw of a bar never drawn before
        super().close()


@contextlib.contextmanager
def progress_line(variant: str, benchmark: str,
                  file: TextIO | None = None) -> Iterator[ProgressLine]:
    """A ``ProgressLine`` labelled ``<variant> <benchmark>`` for the block (stderr by
    default); an exception leaving the block ends the line with ``failed: <type>``."""
    line = ProgressLine(f"{variant} {benchmark}", file=file)
    _OPEN_LINES.append(line)
    try:
        yield line
    except BaseException as exc:
        line.finish(f"failed: {type(exc).__name__}")
        raise
    finally:
        _OPEN_LINES.remove(line)
        line.close()
