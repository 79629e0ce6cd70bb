"""Root conftest: pytester for the plugin's own tests (tests/plugin).

The glu-prune plugin itself is a pytest11 entry point (pyproject.toml), loaded by every
pytest run of an environment where glu-prune is installed.
"""

pytest_plugins = ["pytester"]
