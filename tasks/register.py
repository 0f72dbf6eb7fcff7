"""Stage `register`: log the model as an MLflow pyfunc on raw input (start words for `lyrics-lm`,
review texts for `review-sentiment`), register it with lineage tags, and move alias `champion`
only when it beats the current champion on the same test split (perplexity: lower is better;
macro-F1: higher is better). The registry plumbing is tasks/common/registry.py.

    python -m tasks.register [--task lyrics|reviews] [--params params.yaml]
"""

import json
from pathlib import Path

from tasks.catalog import stage_module
from tasks.common.cli import stage_main
from tasks.common.params import task_section


def run(params, extra_tags: dict[str, str] | None = None, task: str = "lyrics") -> dict:
    tp = task_section(params, task)
    metrics = json.loads(Path(tp.evaluate.metrics).read_text())
    checkpoint = {"checkpoint": str(Path(tp.train.output_dir) / "model.pt")}
    return stage_module(task, "register").register(params, tp, metrics, checkpoint, extra_tags or {}, task)


if __name__ == "__main__":
    stage_main(run, __doc__)
