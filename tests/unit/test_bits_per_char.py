"""Bits per character: the arithmetic on a hand-worked example, the <unk> charge, the text hash,
and the character-level Kneser-Ney yardstick on toy texts."""

import math

import pytest

from tasks.lyrics.batching import lm_stream
from tasks.lyrics.bits_per_char import (
    UNK_CHAR_BITS,
    bits_per_char,
    eval_text_hash,
    scored_chars,
    text_lines,
    token_texts,
    total_nll,
    unk_spelling_bits,
)
from tasks.lyrics.kneser_ney import char_bits_per_char
from tasks.text.vocab import SPECIALS, Vocab

LINES = [["我", "爱你"], ["周杰伦"]]  # 周杰伦 is not in the vocabulary below
VOCAB = Vocab(SPECIALS + ["我", "爱你"])


def test_unk_alphabet_is_the_cjk_unified_block():
    assert math.log2(20992) == pytest.approx(UNK_CHAR_BITS)  # U+4E00..U+9FFF


def test_scored_tokens_and_characters_line_up_with_the_stream():
    # stream: 我 爱你 <eos> <unk> <eos>; perplexity scores the 4 tokens after the first
    assert token_texts(LINES) == ["我", "爱你", "\n", "周杰伦", "\n"]
    assert lm_stream(LINES, VOCAB).numel() - 1 == len(token_texts(LINES)) - 1 == 4
    assert scored_chars(LINES) == 2 + 1 + 3 + 1  # 爱你, the line break, 周杰伦, the line break
    assert text_lines(LINES) == ["我爱你", "周杰伦"]


def test_bits_per_char_hand_worked():
    # the model gives the scored tokens 爱你 1/4, <eos> 1/2, <unk> 1/8, <eos> 1/2: 2 + 1 + 3 + 1 = 7 bits
    nll = -sum(math.log(p) for p in (1 / 4, 1 / 2, 1 / 8, 1 / 2))
    unk = unk_spelling_bits(LINES, VOCAB)
    assert unk == pytest.approx(3 * UNK_CHAR_BITS)  # the three characters of 周杰伦, spelled out
    assert bits_per_char(nll, unk, scored_chars(LINES)) == pytest.approx((7 + 3 * math.log2(20992)) / 7)
    assert bits_per_char(nll, 0.0, 7) == pytest.approx(1.0)
    # the same total from the perplexity over the 4 scored tokens (what evaluate has)
    assert total_nll(2 ** (7 / 4), 4) == pytest.approx(7 * math.log(2))


def test_mapping_to_unk_costs_more_than_any_known_character():
    # a word model that maps everything to <unk> with probability 1 still pays the spelling
    lines = [["周杰伦", "唱歌"]]
    vocab = Vocab(list(SPECIALS))
    assert bits_per_char(0.0, unk_spelling_bits(lines, vocab), scored_chars(lines)) == pytest.approx(
        2 * UNK_CHAR_BITS / 3  # 唱歌 charged, 周杰伦 is the unscored first token; the line break is free
    )


def test_eval_text_hash_ignores_tokenization_not_text():
    assert eval_text_hash([["我", "爱你"]]) == eval_text_hash([["我", "爱", "你"]])
    assert eval_text_hash([["我", "爱你"]]) != eval_text_hash([["我", "爱"]])
    assert eval_text_hash([["我"], ["爱你"]]) != eval_text_hash([["我", "爱你"]])  # line breaks count


def test_char_kneser_ney_order_1_is_hand_computable():
    # train "aab\n": a twice; b and the line break once, so both are the unknown (id 0), seen twice.
    # No singleton ids: discount 0, p(a) = p(unknown) = 2/4, one bit each
    assert char_bits_per_char(["aab"], ["ab"], 1) == pytest.approx((1 + UNK_CHAR_BITS + 1 + UNK_CHAR_BITS) / 2)
    assert char_bits_per_char(["aab"], ["aa"], 1) == pytest.approx((1 + 1 + UNK_CHAR_BITS) / 2)  # a, then \n
    # an unknown the train text never had (no singletons) is floored, not a math error
    assert char_bits_per_char(["aa", "aa"], ["az"], 1) > UNK_CHAR_BITS


def test_char_kneser_ney_learns_a_repetitive_text():
    train = ["春夏秋冬"] * 50
    assert char_bits_per_char(train, ["春夏秋冬"] * 5, 3) < 0.5
    assert char_bits_per_char(train, ["冬秋夏春"] * 5, 3) > 2.0


# --- what the evaluate stage reports, on a tiny trained model ------------------------------------


def test_evaluate_reports_the_model_alone_in_bits_per_char_and_generation_beside_real(tmp_path):
    import json

    import mlflow
    import torch

    from tasks import clean, evaluate, split, tokenize, train, vocab
    from tasks.common.tracking import load_run_id
    from tasks.serving.lyrics_generator import load_checkpoint
    from tasks.text.vocab import tokens_by_split
    from tests.helpers import tiny_lyrics_run

    with tiny_lyrics_run(tmp_path, (clean, tokenize, split, vocab, train, evaluate), epochs=2) as (params, results):
        lp = params.lyrics
        model, vocab_, _ = load_checkpoint(f"{lp.train.output_dir}/model.pt")
        splits = tokens_by_split(lp.split.output)
        run = mlflow.get_run(load_run_id(lp.train.output_dir))
    metrics = results["evaluate"]
    # bits per char from the model's own log-probabilities of the test stream, <unk> spelled out
    stream = lm_stream(splits["test"], vocab_)  # (N,)
    with torch.no_grad():
        logits, _ = model(stream[:-1].view(-1, 1))  # (N-1, 1, V)
    nll = -torch.log_softmax(logits[:, 0].float(), -1).gather(1, stream[1:, None]).sum().item()
    unk = UNK_CHAR_BITS * sum(len(t) for t in token_texts(splits["test"])[1:] if t != "\n" and t not in vocab_.stoi)
    chars = sum(len(t) for t in token_texts(splits["test"])[1:])
    assert metrics["test_chars"] == chars
    assert metrics["test_bits_per_char"] == pytest.approx((nll / math.log(2) + unk) / chars, rel=1e-4)
    assert metrics["test_perplexity"] == pytest.approx(math.exp(nll / (stream.numel() - 1)), rel=1e-4)
    assert "test_perplexity_without_cache" not in metrics
    assert metrics["test_bits_per_char_with_cache"] <= metrics["test_bits_per_char"] + 1e-9  # lam 0 is in its grid
    assert metrics["ratio_to_kneser_ney"] == pytest.approx(
        metrics["test_perplexity"] / metrics["kneser_ney_perplexity"]
    )
    expected_char_kn = char_bits_per_char(text_lines(splits["train"]), text_lines(splits["test"]), 3)
    assert metrics["char_kneser_ney_bits_per_char"] == pytest.approx(expected_char_kn)
    assert metrics["eval_text_hash"] == eval_text_hash(splits["test"])
    # generation: every statistic for the samples and for real test lyrics, the chosen sampling
    for key in ("adjacent_repeat_rate", "top5_char_share", "distinct_2", "train_8gram_rate"):
        assert 0 <= metrics[f"generated_{key}"] <= 1 and 0 <= metrics[f"real_{key}"] <= 1
    cfg = lp.evaluate
    assert metrics["generation_samples"] == len(cfg.sample_starts) + min(cfg.extra_starts, len(splits["test"]))
    report = json.loads((tmp_path / "reports/sampling.json").read_text(encoding="utf-8"))
    grid = cfg.sampling_grid
    assert len(report["grid"]) == len(grid.temperature) * len(grid.top_k) * len(grid.top_p) * len(
        grid.repetition_penalty
    ) * len(grid.no_repeat_ngram_size)
    best = min(report["grid"], key=lambda row: row["distance"])
    assert report["chosen"] == best["setting"]
    used = {**report["chosen"], "repetition_window": cfg.repetition_window}
    assert {f"sampling.{k}": v for k, v in used.items()} == {
        k: v for k, v in metrics.items() if k.startswith("sampling.")
    }
    assert run.data.params["sampling.temperature"] == str(report["chosen"]["temperature"])
    assert run.data.metrics["test_bits_per_char"] == pytest.approx(metrics["test_bits_per_char"])
    samples = (tmp_path / "reports/samples.md").read_text(encoding="utf-8")
    assert "| adjacent repeat rate |" in samples and f"## {cfg.sample_starts[0]}\n" in samples
