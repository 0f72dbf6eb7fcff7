"""Prefect orchestration only: flows chain the stage functions of `tasks/` as Prefect tasks."""

import logging
import os

# Stage modules log through the standard `tasks.*` loggers; Prefect attaches its console and API
# handlers to them (task logs in the terminal and the UI) but leaves their level at the root's
# WARNING, which would hide per-stage counts and per-epoch progress.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
logging.getLogger("tasks").setLevel(logging.INFO)
