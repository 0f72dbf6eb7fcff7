"""The review classifier on the pretrained encoder (reviews.train.init: pretrained): the base
fine-tuned as a language model on the train reviews only, its weights loaded into the classifier,
the layers unfrozen one epoch at a time, and the served predictor and evaluation on top."""

import json
import random
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from tasks import clean, evaluate, ingest, pretrain, split, tokenize, train, vocab
from tasks.common.params import load_params
from tasks.reviews import lm_finetune
from tasks.reviews import train as reviews_train
from tasks.reviews.batching import encode_texts
from tasks.serving.review_predictor import ReviewModel
from tasks.text.vocab import load_vocab
from tests.helpers import (
    make_reviews,
    tiny_pretrain_dict,
    tiny_reviews_params_dict,
    write_reviews_csv,
    write_tiny_general_text,
)

DATA_STAGES = (ingest, clean, tokenize, split, vocab)


@pytest.fixture
def params(tmp_path: Path, monkeypatch):
    """Tiny reviews at character level on a tiny base pretrained on a tiny general text."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land under the cwd
    corpus = write_reviews_csv(tmp_path / "reviews.csv", make_reviews(random.Random(3), 120))
    raw = tiny_reviews_params_dict(tmp_path, corpus)
    raw["pretrain"] = tiny_pretrain_dict(raw["pretrain"], tmp_path, write_tiny_general_text(tmp_path / "news.txt"))
    raw["pretrain"]["model"]["num_layers"] = 2  # so unfreezing has two recurrent layers to go through
    rp = raw["reviews"]
    rp["base_model"] = str(tmp_path / "models/pretrain/model.pt")
    rp["tokenize"]["level"] = "char"
    rp["lm"].update(batch_size=4, bptt=8, epochs=1, lr=0.01)
    rp["model"].update(max_len=40, encoder={**rp["model"]["encoder"], "head_hidden": 8})
    rp["train"].update(init="pretrained", gradual_unfreezing=True)
    rp["train"]["finetune"].update(epochs=3)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    loaded = load_params(path)
    pretrain.run(loaded)
    return loaded


def split_tokens(path: str) -> dict[str, list[list[str]]]:
    table = pq.read_table(path, columns=["tokens", "split"]).to_pydict()
    out = {"train": [], "val": [], "test": []}
    for tokens, s in zip(table["tokens"], table["split"]):
        out[s].append(tokens)
    return out


def test_the_language_model_learns_from_train_reviews_only_and_the_classifier_loads_it(params, monkeypatch):
    streams = []
    real_stream = lm_finetune.lm_stream

    def recording_stream(token_lists, voc):
        streams.append([list(t) for t in token_lists])
        return real_stream(token_lists, voc)

    monkeypatch.setattr(lm_finetune, "lm_stream", recording_stream)
    for stage in DATA_STAGES:
        stage.run(params, task="reviews")
    rp = params.reviews
    splits = split_tokens(rp.split.output)
    base = torch.load(rp.base_model, weights_only=True)
    review_vocab = load_vocab(rp.vocab.output)
    assert review_vocab.itos[: len(base["itos"])] == base["itos"]  # the base's ids, extended

    reader, _, _, tokens = reviews_train.load_split(rp, review_vocab, "reviews")
    model, described = reviews_train.build_classifier(rp, review_vocab, 2, reader, tokens, torch.device("cpu"), None)
    # what the language model trained on is the train text; the val text only scores it; never the test text
    assert streams[0] == splits["train"] and streams[1] == splits["val"]
    assert not any(s == splits["test"] for s in streams)
    lm, _, history = lm_finetune.finetuned_language_model(
        rp, review_vocab, tokens["train"], tokens["val"], torch.device("cpu"), None
    )  # the fine-tuned weights, reused from the checkpoint (same fingerprint)
    assert len(history) == 1 and history[0]["val_ppl"] > 1
    assert len(streams) == 2, "a second call reuses the fine-tuned weights instead of training again"
    classifier_state, lm_state = model.lm.state_dict(), lm.state_dict()
    assert all(torch.equal(classifier_state[k], lm_state[k]) for k in lm_state)
    assert not torch.equal(lm_state["rnns.0.weight_hh_l0"], base["state_dict"]["rnns.0.weight_hh_l0"])  # it moved
    assert model.lm.embedding.weight.shape == (len(review_vocab), base["model_args"]["embedding_size"])
    assert described["architecture"] == "encoder"


def layer_of(name: str) -> str:
    """lm.rnns.1.weight_hh_l0 → lm.rnns.1; lm.embedding.weight → lm.embedding; head.2.bias → head."""
    parts = name.split(".")
    return "head" if parts[0] == "head" else ".".join(parts[:3] if parts[1] == "rnns" else parts[:2])


def test_gradual_unfreezing_trains_the_head_first_then_one_layer_more_each_epoch(params):
    for stage in DATA_STAGES:
        stage.run(params, task="reviews")
    rp = params.reviews
    review_vocab = load_vocab(rp.vocab.output)
    reader, counts, _, tokens = reviews_train.load_split(rp, review_vocab, "reviews")
    model, _ = reviews_train.build_classifier(rp, review_vocab, 2, reader, tokens, torch.device("cpu"), None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    one_epoch = reviews_train.loop_settings(rp.train).model_copy(update={"epochs": 1})
    assert one_epoch.scheduler == "slanted_triangular" and one_epoch.layer_lr_decay == 2.6  # finetune's loop
    stream = reviews_train.train_stream(reader, counts, one_epoch)
    pieces = reviews_train.classifier_pieces(model, stream, reader, one_epoch, "cpu")
    trainable = []
    for epoch in (1, 2, 3, 4):
        pieces.start_epoch(epoch)
        trainable.append({layer_of(name) for name, p in model.named_parameters() if p.requires_grad})
    assert trainable == [
        {"head"},
        {"head", "lm.rnns.1"},
        {"head", "lm.rnns.1", "lm.rnns.0"},
        {"head", "lm.rnns.1", "lm.rnns.0", "lm.embedding"},
    ]

    model.freeze_to(len(model.layer_groups()))
    reviews_train.train_classifier(model, reader, counts, one_epoch, torch.device("cpu"))
    after = model.state_dict()
    encoder = [k for k in before if k.startswith("lm.")]
    assert all(torch.equal(before[k], after[k]) for k in encoder), "epoch 1 trains the head alone"
    assert not torch.equal(before["head.6.weight"], after["head.6.weight"])


def test_the_encoder_classifier_is_served_and_evaluated_with_the_new_metrics(params):
    for stage in (*DATA_STAGES, train, evaluate):
        stage.run(params, task="reviews")
    rp = params.reviews
    reviews = ReviewModel(Path(rp.train.output_dir) / "model.pt")
    labels, probabilities = reviews.predict(["房间很干净，服务也好", "送餐太慢了"])
    assert set(labels) <= {0, 1} and all(0.5 <= p <= 1 for p in probabilities)
    # padding after a review does not change what the forward-only encoder makes of it
    short, long = reviews.vocab.encode(list("房间很好")), reviews.vocab.encode(list("送餐太慢了，菜都凉了"))
    alone = reviews_train.classify(reviews.model, [short], reviews.device)
    batched = reviews_train.classify(reviews.model, [short, long], reviews.device)
    assert alone[0] == pytest.approx(batched[0], abs=1e-5)

    metrics = json.loads(Path(rp.evaluate.metrics).read_text())
    assert 0 <= metrics["mcnemar_p_value"] <= 1 and 0 <= metrics["test_ece"] <= 1
    assert [s["slice"] for s in metrics["length_slices"]] == ["short", "medium", "long"]
    assert sum(s["reviews"] for s in metrics["length_slices"]) == metrics["test_reviews"]
    assert set(metrics["per_class"]) == {"0", "1"} and metrics["lm_val_ppl"] > 1
    assert metrics["baseline"].startswith("tfidf(1-2 gram jieba words)")  # words, though the model reads chars
    reliability = json.loads((Path(rp.evaluate.output_dir) / "reliability.json").read_text())
    assert {r["model"] for r in reliability} == {"model", "tf-idf"}
    assert (Path(rp.evaluate.output_dir) / "reliability.png").stat().st_size > 0


def test_load_split_in_small_record_batches_equals_one_read(params):
    for stage in DATA_STAGES:
        stage.run(params, task="reviews")
    rp = params.reviews
    review_vocab = load_vocab(rp.vocab.output)
    whole = reviews_train.load_split(rp, review_vocab, "reviews")
    small = rp.model_copy(update={"split": rp.split.model_copy(update={"batch_rows": 7})})
    batched = reviews_train.load_split(small, review_vocab, "reviews")
    splits = split_tokens(rp.split.output)
    for name in ("train", "val"):
        ids = [[s.tolist() for seqs, _ in reader.batches(name) for s in seqs] for reader in (whole[0], batched[0])]
        assert ids[0] == ids[1] == encode_texts(splits[name], review_vocab, rp.model.max_len)
    assert whole[1].reviews == batched[1].reviews and whole[1].reviews["train"] == len(splits["train"])
    assert np.array_equal(whole[1].train_labels, batched[1].train_labels)
    assert whole[2] == batched[2] and whole[3] == batched[3]
    assert whole[3]["train"] == splits["train"]  # init: pretrained keeps the token lists for the LM
