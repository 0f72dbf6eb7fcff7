"""Prefect orchestration only: flows chain the stage functions of `tasks/` as Prefect tasks."""

import os

# Stage modules log through the standard `tasks.*` loggers; show them in Prefect's task logs and UI.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "tasks")
