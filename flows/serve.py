"""Serve the pipeline's deployments from this process (start a Prefect server first: `make serve`).

    PREFECT_API_URL=http://127.0.0.1:4200/api python -m flows.serve
    prefect deployment run train-lyrics/train-lyrics --watch
    prefect deployment run train-reviews/train-reviews --watch
"""

from prefect import serve

from flows.train_lyrics import train_lyrics
from flows.train_reviews import train_reviews

if __name__ == "__main__":
    serve(train_lyrics.to_deployment(name="train-lyrics"), train_reviews.to_deployment(name="train-reviews"))
