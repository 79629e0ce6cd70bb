"""How one ``--glu-*`` option is declared and parsed by one entry: ``Spec`` (the pytest
option: name, help, default, argparse type) and the field of ``Options`` it fills
(``option``/``switch``/``options``), whose metadata carries the spec and its parser.

``Parsing`` runs the parsers once per session: each field is built at most once, and a
parser that needs another field's value (the levels need the selected models) asks
``Parsing.value`` for it, so parse order never has to be written down.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping

# (option name, raw value as pytest hands it over, the parsing) -> the field's value;
# raises ValueError (mostly BadOption) naming the option, the value and what is valid
Parser = Callable[[str, Any, "Parsing"], Any]

_META = "glu_option"  # the dataclass field metadata key holding a field's ``Declared``


@dataclass(frozen=True)
class Spec:
    """One pytest option as declared (``parser.getgroup(...).addoption``)."""

    flag: str  # --glu-...
    help: str  # ends with its default, as every pytest-benchmark option
    default: Any = None
    type: Callable[[str], Any] | None = None  # argparse's conversion (int, float)
    action: str | None = None  # "store_true", "append"
    metavar: str | None = None
    ini: str | None = None  # ini key used when the option is not given (a rootdir path)
    ini_help: str = ""

    @property
    def dest(self) -> str:
        """argparse's attribute name: ``--glu-perf-rounds`` -> ``glu_perf_rounds``."""
        return self.flag.lstrip("-").replace("-", "_")

    def declare(self, group: Any) -> None:
        """Add the option to pytest's ``group``."""
        extra = {k: v for k, v in (("type", self.type), ("action", self.action),
                                   ("metavar", self.metavar)) if v is not None}
        group.addoption(self.flag, default=self.default, help=self.help, **extra)


@dataclass(frozen=True)
class Declared:
    """What fills one field of ``Options``: the options it reads and how it is built."""

    specs: tuple[Spec, ...]
    build: Callable[[Parsing], Any]


def option(flag: str, parse: Parser, help: str, **spec: Any) -> Any:
    """A field filled from the option ``flag`` by ``parse``; ``spec`` as ``Spec``'s fields."""
    declared = Spec(flag, help, **spec)
    return field(metadata={_META: Declared((declared,),
                                           lambda p: parse(flag, p.raw(flag), p))})


def switch(name: str, help: str) -> Any:
    """An on/off field (``store_true``): nothing to check."""
    return option(name, lambda _f, value, _p: bool(value), help, default=False,
                  action="store_true")


def options(specs: tuple[Spec, ...], build: Callable[[Parsing], Any]) -> Any:
    """A field filled from several options at once (``build`` reads them with ``raw``)."""
    return field(metadata={_META: Declared(tuple(specs), build)})


def declared_fields(cls: type) -> dict[str, Declared]:
    """``cls``'s option fields, in declaration order (the order of ``pytest --help``)."""
    return {f.name: f.metadata[_META] for f in fields(cls) if _META in f.metadata}


def all_specs(cls: type) -> list[Spec]:
    """Every option ``cls`` declares, in declaration order."""
    return [s for d in declared_fields(cls).values() for s in d.specs]


class Parsing:
    """One pass over the raw option values: every field built once, on first ask."""

    def __init__(self, declared: dict[str, Declared], values: Mapping[str, Any],
                 rootdir: Path, cwd: Path) -> None:
        self.declared = declared
        self.values = values  # option name -> raw value (pytest's, after argparse)
        self.rootdir, self.cwd = rootdir, cwd
        self._built: dict[str, Any] = {}
        self._building: set[str] = set()

    def raw(self, flag: str) -> Any:
        """The raw value of ``flag`` (``None``: not given and no default)."""
        return self.values.get(flag)

    def value(self, name: str) -> Any:
        """The parsed value of the field ``name`` (built now when not built yet)."""
        if name not in self._built:
            if name in self._building:  # two parsers asking for each other
                raise RuntimeError(f"options {sorted(self._building)} depend on each other")
            self._building.add(name)
            self._built[name] = self.declared[name].build(self)
            self._building.discard(name)
        return self._built[name]

    def all(self) -> dict[str, Any]:
        """Every field's value, built in declaration order (so the first bad option
        reported is the first in ``pytest --help``, after what it depends on)."""
        return {name: self.value(name) for name in self.declared}
