"""Root conftest: loads the glu-prune pytest plugin for this repository's suite."""

pytest_plugins = ["glu_prune.pytest_plugin"]
