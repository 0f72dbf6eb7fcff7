"""Stage `evaluate`, logged to the pipeline's MLflow run.

lyrics: the model alone (no cache): test perplexity and bits per character beside an interpolated
Kneser-Ney baseline fitted on the same train split and scored on the same test tokens, and a
character Kneser-Ney on the same text; the cached variant; samples with sampling chosen on
validation and their statistics against real lyrics; metrics.json and learning-curve plots
(tasks/lyrics/evaluate.py).
reviews: accuracy, macro precision / recall / F1 and ROC-AUC (binary) on the test split beside a
TF-IDF + logistic-regression baseline fitted on the same train split; confusion-matrix and PR-curve
plots; the most confident mistakes (mistakes.md); metrics.json (tasks/reviews/evaluate.py).

    python -m tasks.evaluate [--task lyrics|reviews] [--params params.yaml]
"""

from tasks.catalog import stage_module
from tasks.common.cli import stage_main
from tasks.common.params import task_section


def run(params, task: str = "lyrics") -> dict:
    return stage_module(task, "evaluate").evaluate(params, task_section(params, task), task)


if __name__ == "__main__":
    stage_main(run, __doc__)
