"""The reviews data stages as the Prefect flows run them (flows/stages.py tasks), timed one by one,
in the flow process or on the Dask cluster at PIPELINE_DASK_ADDRESS; benchmarks/dask_stages.py
runs it once each way. One Prefect API is started for the flow and the workers.

    python -m benchmarks.dask_flow PARAMS_FILE OVERRIDES_JSON

Prints `RESULT {"on_dask": ..., "seconds": {stage: s}}` as its last line.
"""

import json
import os
import sys
import time
from pathlib import Path

from prefect import flow
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from flows.scaleout import on_dask, with_task_runner
from flows.stages import clean_task, split_task, tokenize_task, vocab_task
from tasks.common.params import load_params

STAGES = {"clean": clean_task, "tokenize": tokenize_task, "split": split_task, "vocab": vocab_task}


@flow(name="bench-dask-data-stages")
def data_stages(params_file: str, overrides: dict) -> dict:
    params = load_params(params_file, overrides)
    seconds = {}
    for name, stage in STAGES.items():
        t0 = time.perf_counter()
        stage(params, task="reviews")
        seconds[name] = time.perf_counter() - t0
    return {"on_dask": on_dask(), "seconds": seconds}


def main() -> None:
    params_file, overrides_file = sys.argv[1:3]
    overrides = json.loads(Path(overrides_file).read_text(encoding="utf-8"))
    server = SubprocessASGIServer()
    server.start(timeout=180)
    os.environ["PREFECT_API_URL"] = server.api_url  # inherited by the Dask workers
    try:
        with temporary_settings({PREFECT_API_URL: server.api_url}):
            result = with_task_runner(data_stages, load_params(params_file, overrides))(params_file, overrides)
    finally:
        server.stop()
    print("RESULT", json.dumps(result))


if __name__ == "__main__":
    main()
