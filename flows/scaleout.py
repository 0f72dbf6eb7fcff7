"""Where the flows' tasks run: Prefect's default runner in the flow process, or a Dask cluster
(`orchestration:` in params.yaml, or PIPELINE_DASK_ADDRESS). On Dask the tokenize stage fans out
as one task per shard; every other stage still runs in the flow process.
"""

import os

import prefect
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext

from tasks import tokenize
from tasks.catalog import task_package
from tasks.common.errors import PipelineError
from tasks.common.params import task_section
from tasks.text import tokenize_stream

DASK_ADDRESS_ENV = "PIPELINE_DASK_ADDRESS"

tokenize_shard_task = prefect.task(tokenize_stream.tokenize_shard, name="tokenize-shard", cache_policy=NO_CACHE)


def with_task_runner(flow: prefect.Flow, params) -> prefect.Flow:
    """`flow` on the task runner that params.orchestration (or PIPELINE_DASK_ADDRESS) asks for."""
    orchestration = params.orchestration
    address = os.environ.get(DASK_ADDRESS_ENV) or orchestration.dask_address
    if orchestration.task_runner == "local" and not os.environ.get(DASK_ADDRESS_ENV):
        return flow
    try:
        from prefect_dask import DaskTaskRunner  # noqa: PLC0415 (optional extra: pip install -e '.[dask]')
    except ImportError:
        raise PipelineError(
            "orchestration.task_runner: dask needs prefect-dask; pip install -e '.[dask]' "
            "or set task_runner: local in params.yaml"
        ) from None
    # No address: a temporary LocalCluster, one single-threaded worker per core (jieba holds the GIL).
    runner = DaskTaskRunner(address=address) if address else DaskTaskRunner(cluster_kwargs={"threads_per_worker": 1})
    return flow.with_options(task_runner=runner)


def on_dask() -> bool:
    """Whether the running flow submits its tasks to a Dask cluster."""
    context = FlowRunContext.get()
    try:
        from prefect_dask import DaskTaskRunner  # noqa: PLC0415 (optional extra: pip install -e '.[dask]')
    except ImportError:
        return False
    return context is not None and isinstance(context.task_runner, DaskTaskRunner)


def tokenize_stage(params, task: str = "lyrics") -> dict:
    """The tokenize stage (the function of the flows' cached `tokenize` task): in the flow process
    (worker processes per `tokenize.workers`), or on Dask one `tokenize-shard` task per row range,
    merged here in shard order into the same file. Cluster workers read `tokenize.input`
    themselves, so it must be reachable from them (a shared filesystem); they send their rows back,
    so only the flow process writes. The sharded output is byte-identical to a local run's, so the
    stage's cache record holds whichever runner wrote the file."""
    if not on_dask():
        return tokenize.run(params, task=task)
    cfg = task_section(params, task).tokenize
    keep_text = task_package(task).KEEP_TEXT
    futures = [
        tokenize_shard_task.submit(cfg, start, stop, keep_text)
        for start, stop in tokenize_stream.plan_shards(cfg, params.orchestration.shard_rows)
    ]
    return tokenize_stream.write_tables((future.result() for future in futures), cfg, keep_text)
