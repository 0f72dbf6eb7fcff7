"""Fixtures only (the helpers they use are in tests/helpers.py): tiny synthetic lyrics and review
corpora in a temp dir, and params that train in seconds."""

import random
from pathlib import Path

import pytest
import torch
import yaml

from tasks.common.params import load_params
from tests.helpers import (
    make_reviews,
    tiny_params_dict,
    tiny_reviews_params_dict,
    write_params,
    write_reviews_csv,
    write_tiny_corpus,
)


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests train tiny models: one intra-op thread is fastest, and on a busy 2-core box torch's
    default threads spin waiting for each other and make them many times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    return write_tiny_corpus(tmp_path / "raw")


@pytest.fixture
def tiny_params_file(tmp_path: Path, tiny_corpus: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny_params_dict(tmp_path, tiny_corpus), allow_unicode=True), encoding="utf-8")
    return path


@pytest.fixture
def tiny_params(tiny_params_file: Path):
    return load_params(tiny_params_file)


@pytest.fixture
def tiny_reviews(tmp_path: Path) -> Path:
    """A CSV of 160 synthetic reviews (text, label), deterministic."""
    return write_reviews_csv(tmp_path / "raw" / "reviews.csv", make_reviews(random.Random(0), 160))


@pytest.fixture
def reviews_params_file(tmp_path: Path, tiny_reviews: Path, monkeypatch) -> Path:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return write_params(tmp_path / "params.yaml", tiny_reviews_params_dict(tmp_path, tiny_reviews))


@pytest.fixture
def reviews_params(reviews_params_file: Path):
    return load_params(reviews_params_file)
