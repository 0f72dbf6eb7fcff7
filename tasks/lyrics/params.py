"""The lyrics task's params sections (params.yaml `lyrics:`): types and ranges only."""

from typing import Annotated, Literal

from pydantic import Field, model_validator

from tasks.common.sections import (
    RNN,
    Clean,
    Count,
    Count0,
    Positive,
    Register,
    Section,
    SplitFraction,
    Tokenize,
    TrainLoop,
    Vocab,
)


class CleanLyrics(Clean):
    drop_annotations: bool
    drop_lrc_tags: bool
    drop_credits: bool
    drop_repeated: Literal["all", "consecutive", "none"]


class Split(SplitFraction):
    block_lines: Count


class Model(RNN):
    embedding_size: Count | None
    embedding_dropout: Annotated[float, Field(ge=0, lt=1)]
    weight_dropout: Annotated[float, Field(ge=0, lt=1)]
    tie_weights: bool
    output: Literal["softmax", "adaptive"]
    adaptive_cutoffs: Annotated[list[int], Field(min_length=1)]

    @model_validator(mode="after")
    def _output_fits(self) -> "Model":
        if self.embedding_size is None:  # so `-S lyrics.model.hidden_size=512` alone just works
            self.embedding_size = self.hidden_size
        # Tying shares the decoder's (V, H) matrix with the embedding; the adaptive output has no
        # such matrix (its tail clusters project to smaller sizes), so tying cannot apply. An error,
        # not a silent untie: the two settings give different models and parameter counts.
        if self.output == "adaptive" and self.tie_weights:
            raise ValueError("output: adaptive cannot use tied weights; also set lyrics.model.tie_weights: false")
        cutoffs = self.adaptive_cutoffs
        if cutoffs[0] < 1 or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
            raise ValueError("adaptive_cutoffs must be positive and strictly increasing, e.g. [2000, 10000]")
        return self


class Train(TrainLoop):
    bptt: Annotated[int, Field(ge=2)]
    continuous_cache: bool


class SamplingGrid(Section):
    """The sampling settings evaluate tries on validation (every combination of these lists)."""

    temperature: Annotated[list[Positive], Field(min_length=1)]
    top_k: Annotated[list[Count0], Field(min_length=1)]
    top_p: Annotated[list[Annotated[float, Field(gt=0, le=1)]], Field(min_length=1)]
    repetition_penalty: Annotated[list[Annotated[float, Field(ge=1)]], Field(min_length=1)]
    no_repeat_ngram_size: Annotated[list[Count0], Field(min_length=1)]


class Evaluate(Section):
    output_dir: str
    metrics: str
    ngram_order: Annotated[int, Field(ge=1, le=6)]
    sample_starts: list[str]
    extra_starts: Count0
    sample_length: Count
    sampling_grid: SamplingGrid
    grid_starts: Count
    repetition_window: Count0
    seed: int


class LyricsParams(Section):
    corpus: str
    base_model: str | None  # a pretrained base's model.pt (tasks/pretrain.py) to fine-tune from; None: from scratch
    clean: CleanLyrics
    tokenize: Tokenize
    split: Split
    vocab: Vocab
    model: Model
    train: Train
    evaluate: Evaluate
    # `register` would shadow BaseModel's ABC `register` method, hence the alias.
    registry: Register = Field(alias="register")
