"""The reviews task's params sections (params.yaml `reviews:`): types and ranges only."""

from typing import Annotated, Literal

from pydantic import Field, PositiveFloat

from tasks.common.sections import (
    RNN,
    Clean,
    Count,
    Count0,
    Register,
    Section,
    SplitFraction,
    Tokenize,
    TrainLoop,
    Vocab,
)


class ReviewsInput(Section):
    path: str
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"]
    text_column: str
    label_column: str
    output: str


class CleanReviews(Clean):
    input: str
    drop_html: bool
    drop_urls: bool
    drop_emails: bool
    drop_control: bool
    collapse_punctuation: bool
    drop_duplicates: bool
    drop_conflicts: bool


class SplitReviews(SplitFraction): ...  # stratified by label (tasks/reviews/split.py): no blocks


class ClassifierModel(RNN):
    embedding_size: Count
    bidirectional: bool
    pooling: Literal["attention", "max", "last"]
    max_len: Count


class TrainClassifier(TrainLoop):
    bucket_size: Count
    monitor: Literal["val_loss", "val_macro_f1"]
    class_weights: Literal["auto", "balanced", "none"]
    imbalance_ratio: Annotated[float, Field(ge=1)]  # largest/smallest class: never below 1
    embedding_init: Literal["ppmi", "random"]
    ppmi_window: Count


class EvaluateClassifier(Section):
    output_dir: str
    metrics: str
    baseline_ngram_max: Annotated[int, Field(ge=1, le=3)]
    baseline_min_df: Count
    baseline_C: PositiveFloat | Annotated[list[PositiveFloat], Field(min_length=1)]
    mistakes: Count0


class ReviewsParams(Section):
    experiment: str
    input: ReviewsInput
    clean: CleanReviews
    tokenize: Tokenize
    split: SplitReviews
    vocab: Vocab
    model: ClassifierModel
    train: TrainClassifier
    evaluate: EvaluateClassifier
    registry: Register = Field(alias="register")
