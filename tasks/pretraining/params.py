"""The pretraining stage's params section (params.yaml `pretrain:`): types and ranges only."""

from typing import Annotated

from pydantic import Field

from tasks.common.sections import Count, Fraction, Register, Section, TrainLoop
from tasks.lyrics.params import Model


class PretrainVocab(Section):
    output: str
    min_freq: Count
    max_size: Annotated[int, Field(ge=10)]


class PretrainTrain(TrainLoop):
    bptt: Annotated[int, Field(ge=2)]
    epoch_tokens: Annotated[int, Field(ge=1000)]
    val_tokens: Annotated[int, Field(ge=100)]


class PretrainParams(Section):
    experiment: str
    corpus: str
    text_column: str
    by_clause: bool
    val_fraction: Fraction
    vocab: PretrainVocab
    model: Model
    train: PretrainTrain
    # `register` would shadow BaseModel's ABC `register` method, hence the alias.
    registry: Register = Field(alias="register")
