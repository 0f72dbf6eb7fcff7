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


Dropout = Annotated[float, Field(ge=0, lt=1)]


class EncoderHead(Section):
    """The classifier on the pretrained encoder (train.init: pretrained): the encoder's AWD-LSTM
    regularisers while it fine-tunes, and the pooling head's size and dropout."""

    dropout: Dropout
    embedding_dropout: Dropout
    weight_dropout: Dropout
    head_hidden: Count
    head_dropout: Dropout


class ClassifierModel(RNN):
    embedding_size: Count
    bidirectional: bool
    pooling: Literal["attention", "max", "last"]
    max_len: Count
    encoder: EncoderHead


class FinetuneLoop(Section):
    """The loop settings that replace train's own when the classifier starts from the pretrained
    encoder (ULMFiT's: a higher rate for the new head, discriminative rates below it, the slanted
    triangular schedule, few epochs)."""

    lr: Annotated[float, Field(gt=0)]
    layer_lr_decay: Annotated[float, Field(ge=1)]
    scheduler: Literal["plateau", "cosine", "slanted_triangular"]
    warmup_epochs: Count0
    epochs: Count
    early_stopping_patience: Count


class TrainClassifier(TrainLoop):
    bucket_size: Count
    shuffle_buffer: Count
    loader_workers: Annotated[int, Field(ge=0, le=1)]  # more would each yield the whole epoch
    checkpoint_every: Count0  # batches; 0: at epoch ends only
    monitor: Literal["val_loss", "val_macro_f1"]
    class_weights: Literal["auto", "balanced", "none"]
    imbalance_ratio: Annotated[float, Field(ge=1)]  # largest/smallest class: never below 1
    init: Literal["pretrained", "ppmi", "random"]
    finetune: FinetuneLoop
    gradual_unfreezing: bool
    ppmi_window: Count


class FinetuneLanguageModel(TrainLoop):
    """ULMFiT's second step: the pretrained base fine-tuned as a language model on the train
    split's review text, before the classifier is put on its encoder."""

    epochs: Count0  # 0: the classifier goes straight onto the base's encoder
    bptt: Annotated[int, Field(ge=2)]
    dropout: Dropout
    embedding_dropout: Dropout
    weight_dropout: Dropout


class EvaluateClassifier(Section):
    output_dir: str
    metrics: str
    baseline_ngram_max: Annotated[int, Field(ge=1, le=3)]
    baseline_min_df: Count
    baseline_max_train: Count | None  # None: every train review
    baseline_C: PositiveFloat | Annotated[list[PositiveFloat], Field(min_length=1)]
    mistakes: Count0


class ReviewsParams(Section):
    experiment: str
    base_model: str | None  # the pretrained base's model.pt that train.init: pretrained starts from
    input: ReviewsInput
    clean: CleanReviews
    tokenize: Tokenize
    split: SplitReviews
    vocab: Vocab
    lm: FinetuneLanguageModel
    model: ClassifierModel
    train: TrainClassifier
    evaluate: EvaluateClassifier
    registry: Register = Field(alias="register")
