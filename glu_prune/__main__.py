"""``python -m glu_prune``: see ``glu_prune.cli``."""

from glu_prune.cli import main

raise SystemExit(main())
