"""Root conftest: loads the glu-prune pytest plugin (and pytester, for tests/plugin)."""

pytest_plugins = ["pytester", "glu_prune.plugin"]
