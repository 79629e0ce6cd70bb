"""Fill the four exception tables of tests/unit/test_layering.py from the tree in the cwd
(owners by the plan's ownership rule). ``--write``: replace the tables in the file; else print."""
import contextlib, importlib.util, io, re, sys
from pathlib import Path
spec = importlib.util.spec_from_file_location("layering", Path("tests/unit/test_layering.py"))
lay = importlib.util.module_from_spec(spec); sys.modules["layering"] = lay; spec.loader.exec_module(lay)

def owner(mod: str) -> str:
    mod = mod.split(":")[0]
    if mod.startswith("glu_prune.results") or mod == "glu_prune.plugin.records":
        return "B1"
    if mod.startswith("glu_prune.judging") or mod in (
            "glu_prune.plugin.judge", "glu_prune.plugin.perf_session",
            "glu_prune.tools.build_reference"):
        return "B2"
    if mod.startswith("glu_prune.catalog") or mod in (
            "glu_prune.plugin", "glu_prune.plugin.options", "glu_prune.plugin.results",
            "glu_prune.plugin.gpus", "glu_prune.plugin.quality", "glu_prune.plugin.perf",
            "glu_prune.core.importance", "glu_prune.core.variants"):
        return "B3"
    return "B4"

out = io.StringIO()
with contextlib.redirect_stdout(out):
  print("ALLOWED_AGAINST_LAYERS: dict[tuple[str, str], str] = {")
  for layer in lay.LAYERS:
      for a, b in sorted({(i.importer, i.imported) for i in lay.against_layers(layer)}):
          print(f"    ({a!r}, {b!r}): {owner(a)!r},")
  print("}")
  print("ALLOWED_LOOPS: dict[frozenset[str], str] = {")
  for c in lay.loops():
      owners = sorted({owner(m) for m in c})
      print(f"    frozenset({sorted(c)!r}): {owners[0]!r},")
  print("}")
  print("ALLOWED_IN_FUNCTION: dict[tuple[str, str], str] = {")
  for a, b in sorted({(i.importer, i.imported) for i in lay.function_imports()}):
      print(f"    ({a!r}, {b!r}): {owner(a)!r},")
  print("}")
  print("ALLOWED_LONG: dict[str, str] = {")
  for k, n in sorted(lay.too_long().items()):
      print(f"    {k!r}: {owner(k)!r},  # {n} lines")
  print("}")
tables = out.getvalue()
path = Path("tests/unit/test_layering.py")
if sys.argv[1:] == ["--write"]:
    text = path.read_text()
    start = text.index("ALLOWED_AGAINST_LAYERS:")
    end = text.index("\n\n\n@dataclass")
    path.write_text(text[:start] + tables.rstrip("\n") + text[end:])
    print(f"wrote the exception tables into {path}")
else:
    print(tables)
