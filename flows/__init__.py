"""Prefect orchestration only: flows chain the stage functions of `tasks/` as Prefect tasks."""

import logging
import os

from tasks.common.errors import PipelineError

# Stage modules log through the standard `tasks.*` loggers; Prefect attaches its console and API
# handlers to them (task logs in the terminal and the UI) but leaves their level at the root's
# WARNING, which would hide per-stage counts and per-epoch progress.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
logging.getLogger("tasks").setLevel(logging.INFO)


class WithoutTracebackForBadInput(logging.Filter):
    """A PipelineError is expected (bad input or params): its one-line message names the file and
    the fix, so Prefect's task and flow engines log that line without the traceback. Unexpected
    exceptions keep theirs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], PipelineError):
            record.exc_info, record.exc_text = None, None
        return True


for _name in ("prefect.task_runs", "prefect.flow_runs"):  # the loggers Prefect's engines report failures on
    logging.getLogger(_name).addFilter(WithoutTracebackForBadInput())
