"""Serve the pipeline's deployments from this process (start a Prefect server first: `make serve`).

PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve
prefect deployment run train-lyrics/train-lyrics --watch
prefect deployment run train-reviews/train-reviews --watch
prefect deployment run pretrain-base/pretrain-base --watch
"""

from prefect import serve

from flows.pretrain import pretrain_base
from flows.scaleout import with_task_runner
from flows.train_lyrics import train_lyrics
from flows.train_reviews import train_reviews
from tasks.common.params import load_params

if __name__ == "__main__":
    # The task runner (local or Dask) is fixed when serving starts, from params.yaml and the environment.
    params = load_params()
    serve(
        with_task_runner(train_lyrics, params).to_deployment(name="train-lyrics"),
        with_task_runner(train_reviews, params).to_deployment(name="train-reviews"),
        with_task_runner(pretrain_base, params).to_deployment(name="pretrain-base"),
    )
