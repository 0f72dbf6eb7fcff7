"""The params section models every task builds on: shared ranges, the base that rejects unknown
keys, and the sections of shared stages (tokenize, vocab, the training loop, register) and of the
project (tracking, orchestration). Types and ranges only: every value comes from params.yaml."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

# Ranges several sections share.
Count = Annotated[int, Field(ge=1)]
Count0 = Annotated[int, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(gt=0, lt=0.5)]


class Section(BaseModel):
    # Unknown keys are typos more often than not: reject them with the key named.
    model_config = ConfigDict(extra="forbid")


class Stage(Section):
    input: str
    output: str


class Tracking(Section):
    uri: str
    experiment: str


class Orchestration(Section):
    task_runner: Literal["local", "dask"]
    dask_address: str | None
    shard_rows: Count


class Clean(Section):  # the rules both cleaners have
    output: str
    report: str
    to_halfwidth: bool
    to_simplified: bool
    min_chars: Count


class Tokenize(Stage):
    level: Literal["word", "char"]
    backend: Literal["jieba", "rjieba"]
    hmm: bool
    user_dict: str | None
    workers: Count0
    batch_rows: Count


class SplitFraction(Stage):
    val_fraction: Fraction
    test_fraction: Fraction
    seed: int  # keys the hash that places each review / song (tasks/split.py)
    batch_rows: Count  # rows read and written at a time: memory stays flat whatever the corpus size


class Vocab(Stage):
    min_freq: Count
    max_size: Annotated[int, Field(ge=10)]


class RNN(Section):
    cell: Literal["rnn", "gru", "lstm"]
    hidden_size: Count
    num_layers: Count
    dropout: Annotated[float, Field(ge=0, lt=1)]


class TrainLoop(Section):
    """Settings of the training loop both tasks share (tasks/training/loop.py `fit`)."""

    output_dir: str
    history: str
    checkpoint_dir: str
    device: Literal["auto", "cpu", "cuda"]
    seed: int
    batch_size: Count
    epochs: Count
    optimizer: Literal["adam", "adamw"]
    lr: Positive
    layer_lr_decay: Annotated[float, Field(ge=1)]
    weight_decay: Annotated[float, Field(ge=0)]
    clip: Positive
    scheduler: Literal["plateau", "cosine", "slanted_triangular"]
    plateau_factor: Annotated[float, Field(gt=0, lt=1)]
    plateau_patience: Count0
    warmup_epochs: Count0
    early_stopping_patience: Count
    max_minutes: Positive | None
    num_threads: Count0


class Register(Section):
    model_name: str
    output: str
    alias: str


# --- the hyperparameter sweep (flows/sweep.py, tasks/tuning/) ------------------------------------
# low < high, a log range above 0 and each key's place in the task's params are checked when a
# sweep starts (tasks/tuning/space.py), where the task's params are known.


class FloatDimension(Section):  # trial.suggest_float(key, low, high, log=log)
    key: str  # a dotted params key of the task, e.g. lyrics.train.lr
    type: Literal["float"]
    low: float
    high: float
    log: bool


class IntDimension(Section):  # trial.suggest_int(key, low, high, log=log)
    key: str
    type: Literal["int"]
    low: int
    high: int
    log: bool


class CategoricalDimension(Section):  # trial.suggest_categorical(key, choices)
    key: str
    type: Literal["categorical"]
    choices: Annotated[list[bool | int | float | str | None], Field(min_length=1)]


Dimension = Annotated[FloatDimension | IntDimension | CategoricalDimension, Field(discriminator="type")]


class SweepTask(Section):
    epochs: Count  # a trial's train.epochs
    metric: str  # a validation key of the epoch's history row
    direction: Literal["minimize", "maximize"]
    space: Annotated[list[Dimension], Field(min_length=1)]


class SweepPruner(Section):  # optuna.pruners.MedianPruner
    startup_trials: Count0
    min_epochs: Count


class Sweep(Section):
    storage: str
    output_dir: str
    trials: Count
    timeout_minutes: Positive | None
    parallel: Count
    seed: int
    startup_trials: Count0
    try_defaults_first: bool
    pruner: SweepPruner
    lyrics: SweepTask
    reviews: SweepTask
