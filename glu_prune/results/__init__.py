"""Results: the one record schema, the report folder (results.json, results.md, charts),
merging shards and the folder's lock. Never imports pytest.

Order of the modules (each imports only those before it): record -> lookup -> runs ->
files -> merge, lock -> format -> analysis -> tables -> perf_tables -> equal_params ->
plots -> shape_plot -> markdown -> writing.
"""

from glu_prune.results.analysis import regressions
from glu_prune.results.files import header_line, load_document
from glu_prune.results.lock import LOCK_NAME, ReportFolderBusy, ReportLock, read_lock
from glu_prune.results.markdown import incomplete_banner, markdown, terminal_summary
from glu_prune.results.merge import merge
from glu_prune.results.record import RECORD_KEY, VERDICTS, Record
from glu_prune.results.runs import failed_run
from glu_prune.results.writing import finish_run, write_results

__all__ = ["Record", "RECORD_KEY", "VERDICTS", "finish_run", "write_results", "markdown",
           "regressions", "incomplete_banner", "terminal_summary", "header_line",
           "load_document", "merge", "ReportLock", "ReportFolderBusy", "LOCK_NAME",
           "read_lock", "failed_run"]
