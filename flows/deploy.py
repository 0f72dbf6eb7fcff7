"""Deploy both flows to a Prefect process work pool, the alternative to `flows.serve`: a worker
(`prefect worker start --pool NAME`, on this machine or another with the project checked out at the
same path) picks up each run and executes it in a subprocess, in the project directory.

    export PREFECT_API_URL=http://127.0.0.1:4200/api        # a running server (make worker starts one)
    python -m flows.deploy [--pool local]                   # from the project root
    prefect worker start --pool local
    prefect deployment run train-lyrics/train-lyrics --watch

The deployments are named like the served ones, so the same `prefect deployment run` commands work.
"""

import argparse
import contextlib
from pathlib import Path

from prefect import flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from tasks.common.cli import run_cli
from tasks.common.errors import PipelineError

ENTRYPOINTS = {
    "train-lyrics": "flows/train_lyrics.py:train_lyrics",
    "train-reviews": "flows/train_reviews.py:train_reviews",
    "pretrain-base": "flows/pretrain.py:pretrain_base",
}


def ensure_process_pool(name: str) -> None:
    """Create the work pool (type `process`) unless it exists."""
    with get_client(sync_client=True) as client, contextlib.suppress(ObjectAlreadyExists):
        client.create_work_pool(WorkPoolCreate(name=name, type="process"))


def deploy(pool: str, project: Path) -> list[str]:
    """Register the deployments on `pool`; their code and params.yaml are read from `project` at run time."""
    ensure_process_pool(pool)
    ids = []
    for name, entrypoint in ENTRYPOINTS.items():
        # A local source: the worker's pull step sets the working directory to `project`, so the
        # flow reads params.yaml, data/ and dvc.yaml there, as `python -m flows.train_*` does.
        source = flow.from_source(source=str(project), entrypoint=entrypoint)
        ids.append(str(source.deploy(name=name, work_pool_name=pool, print_next_steps=False)))
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(
        description="Deploy train-lyrics, train-reviews and pretrain-base to a Prefect process work pool."
    )
    parser.add_argument("--pool", default="local", help="work pool name (created as type `process` if missing)")
    parser.add_argument("--project", default=".", help="project root the worker runs the flows in (default: here)")
    args = parser.parse_args()
    if not PREFECT_API_URL.value():
        # Deploying to the ephemeral API would vanish with this process; a worker needs a server.
        raise PipelineError(
            "PREFECT_API_URL is not set; start a server (make worker, or prefect server start) "
            "and export PREFECT_API_URL=http://127.0.0.1:4200/api"
        )
    project = Path(args.project).resolve()
    deploy(args.pool, project)
    print(
        f"deployed {', '.join(f'{n}/{n}' for n in ENTRYPOINTS)} to pool {args.pool!r} ({project}); "
        f"start a worker with: prefect worker start --pool {args.pool}"
    )


if __name__ == "__main__":
    run_cli(main)
