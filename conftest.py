"""Root conftest: pytester for tests/plugin (the glu-prune plugin is a pytest11 entry point)."""

pytest_plugins = ["pytester"]
