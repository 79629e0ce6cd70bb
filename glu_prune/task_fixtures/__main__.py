"""``python -m glu_prune.task_fixtures``: the dress rehearsal (see ``rehearse.py``)."""

from glu_prune.tools.rehearse import main

raise SystemExit(main())
