"""Sampling, generation and the `python -m tasks.generate` command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tasks.common.errors import PipelineError
from tasks.serving.lyrics_generator import (
    SAMPLING_DEFAULTS,
    apply_repetition_penalty,
    generate,
    generate_batch,
    generate_text,
    load_checkpoint,
    render,
    repeated_ngram_ids,
    sample_next,
    sampling_defaults,
    start_status,
    start_tokens,
)
from tasks.text.vocab import BOS, EOS, PAD, SPECIALS, UNK, Vocab
from tests.helpers import ROOT, tiny_lyrics_run

WORD_TOKENIZER = {"level": "word", "hmm": True, "user_dict": None}
CHAR_TOKENIZER = {"level": "char", "hmm": True, "user_dict": None}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained by the real stages on the synthetic corpus: (params, model.pt path)."""
    from tasks import clean, split, tokenize, train, vocab

    with tiny_lyrics_run(tmp_path_factory.mktemp("generate"), (clean, tokenize, split, vocab, train), epochs=3) as (
        params,
        _,
    ):
        pass
    model_pt = Path(params.lyrics.train.output_dir) / "model.pt"
    assert model_pt.is_file()
    return params, model_pt


# --- sampling -----------------------------------------------------------------------------------


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_top_k_1_is_argmax():
    logits = torch.tensor([0.1, 2.0, 1.9, -1.0, 0.5])
    for seed in range(20):
        assert sample_next(logits, temperature=1.0, top_k=1, top_p=1.0, generator=gen(seed)) == 1
        assert sample_next(logits, temperature=5.0, top_k=1, top_p=1.0, generator=gen(seed)) == 1


def test_top_k_limits_to_the_k_best():
    logits = torch.tensor([3.0, 2.9, 2.8, -5.0, 2.7])
    drawn = {sample_next(logits, 10.0, 2, 1.0, gen(s)) for s in range(200)}
    assert drawn == {0, 1}


def test_top_p_keeps_the_smallest_nucleus():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    drawn = {sample_next(logits, 1.0, 0, 0.6, gen(s)) for s in range(300)}
    assert drawn == {0, 1}  # 0.5 < 0.6, so the token crossing 0.6 (0.3) is kept too
    drawn = {sample_next(logits, 1.0, 0, 0.4, gen(s)) for s in range(100)}
    assert drawn == {0}
    drawn = {sample_next(logits, 1.0, 0, 1.0, gen(s)) for s in range(2000)}
    assert drawn == {0, 1, 2, 3}  # top_p 1.0 disables the filter


def test_sample_next_does_not_modify_its_input():
    logits = torch.tensor([1.0, 2.0, 3.0])
    sample_next(logits, 0.5, 2, 0.5, gen())
    assert logits.tolist() == [1.0, 2.0, 3.0]


def test_repetition_penalty_divides_positive_and_multiplies_negative_scores():
    logits = torch.tensor([2.0, -1.0, 0.5, 3.0])
    penalised = apply_repetition_penalty(logits, [0, 1, 0], 2.0)
    assert penalised.tolist() == [1.0, -2.0, 0.5, 3.0]  # tokens 0 and 1 seen: both less likely
    assert logits.tolist() == [2.0, -1.0, 0.5, 3.0]  # the input is left alone
    assert apply_repetition_penalty(logits, [0, 1], 1.0).tolist() == logits.tolist()  # 1.0: off
    # on log-probabilities (all negative, the adaptive output's scores) it lowers the seen ones too
    logp = torch.log_softmax(torch.tensor([1.0, 1.0, 1.0]), dim=0)
    probs = torch.softmax(apply_repetition_penalty(logp, [0], 1.5), dim=0)
    assert probs[0] < 1 / 3 < probs[1] == probs[2]


def test_repeated_ngram_ids_are_what_would_complete_a_seen_ngram():
    assert repeated_ngram_ids([1, 2, 3, 1, 2], 3) == [3]  # 1 2 was followed by 3
    assert repeated_ngram_ids([1, 2, 3, 1, 2], 2) == [3]  # after 2 came 3
    assert sorted(repeated_ngram_ids([1, 2, 1, 3, 1], 2)) == [2, 3]
    assert sorted(repeated_ngram_ids([5, 6, 5], 1)) == [5, 5, 6]  # n = 1: every token seen
    assert repeated_ngram_ids([1, 2, 3], 0) == [] and repeated_ngram_ids([1, 2, 3], 4) == []


def test_sampling_defaults_take_evaluates_choice(tmp_path):
    assert (
        sampling_defaults(None) == SAMPLING_DEFAULTS and sampling_defaults(tmp_path / "none.json") == SAMPLING_DEFAULTS
    )
    chosen = {"temperature": 0.9, "top_k": 0, "top_p": 1.0, "repetition_penalty": 1.6, "no_repeat_ngram_size": 3}
    path = tmp_path / "sampling.json"
    path.write_text(f'{{"chosen": {json.dumps(chosen)}, "repetition_window": 7, "grid": []}}', encoding="utf-8")
    assert sampling_defaults(path) == {**SAMPLING_DEFAULTS, **chosen, "repetition_window": 7}


# --- start tokens and rendering -------------------------------------------------------------------


def small_vocab() -> Vocab:
    return Vocab(SPECIALS + ["天", "空", "我爱你", "下雨", "baby"])


def test_start_tokens_known_word_is_kept():
    assert start_tokens("我爱你", small_vocab(), WORD_TOKENIZER) == ["我爱你"]


def test_start_tokens_unknown_word_falls_back_to_known_characters():
    # jieba keeps 天空 as one word, which this vocab lacks: its known characters are used
    assert start_tokens("天空", small_vocab(), WORD_TOKENIZER) == ["天", "空"]
    assert start_tokens("天空城", small_vocab(), WORD_TOKENIZER) == ["天", "空"]  # 城 unknown: skipped
    # char level: 下 and 雨 are not in this word vocab, so only baby is left
    assert start_tokens("baby 下雨", small_vocab(), CHAR_TOKENIZER) == ["baby"]
    assert start_tokens("baby天", small_vocab(), CHAR_TOKENIZER) == ["baby", "天"]


@pytest.mark.parametrize("text", ["zzzz", "城市", "!!"])
def test_start_tokens_nothing_known_is_a_clear_error(text):
    with pytest.raises(PipelineError) as info:
        start_tokens(text, small_vocab(), WORD_TOKENIZER)
    message = str(info.value)
    assert repr(text) in message
    assert "no word or character the model knows" in message
    assert "try one of: 天 空 我爱你" in message
    assert "\n" not in message


def test_render():
    assert render(["天空", EOS, "下雨"]) == "天空\n下雨"
    assert render(["天空", EOS, "下雨", EOS]) == "天空\n下雨"
    assert render(["baby", "you", "我", "爱", "you"]) == "baby you我爱you"
    assert render(["I", "love", EOS, "you"]) == "I love\nyou"


# --- generation with a trained model ------------------------------------------------------------


def test_generate_is_reproducible_with_a_seed(trained):
    model, vocab, _ = load_checkpoint(trained[1])
    a = generate(model, vocab, ["天空"], 30, temperature=1.5, seed=7)
    b = generate(model, vocab, ["天空"], 30, temperature=1.5, seed=7)
    assert a == b
    assert a[0] == "天空" and len(a) == 31
    others = [generate(model, vocab, ["天空"], 30, temperature=1.5, seed=s) for s in range(8, 12)]
    assert any(o != a for o in others)


def test_generate_never_emits_pad_unk_bos(trained):
    model, vocab, _ = load_checkpoint(trained[1])
    # make the banned ids by far the likeliest: they must still never be sampled
    with torch.no_grad():
        for tok in (PAD, UNK, BOS):
            model.decoder.bias[vocab.stoi[tok]] = 50.0
    for seed in range(3):
        out = generate(model, vocab, ["天空"], 40, temperature=2.0, top_k=0, seed=seed)
        assert not {PAD, UNK, BOS} & set(out)


def test_no_repeat_ngram_size_1_never_repeats_a_token(trained):
    model, vocab, tokenizer = load_checkpoint(trained[1])
    start = start_tokens("下雨", vocab, tokenizer)  # 下雨, or 下 雨 at character level
    for seed in range(3):
        out = generate(model, vocab, start, 12, temperature=1.5, no_repeat_ngram_size=1, seed=seed)
        assert len(set(out)) == len(out) == len(start) + 12
    # without the ban a small model repeats within a few dozen tokens
    assert any(len(set(generate(model, vocab, start, 40, temperature=1.5, seed=s))) < 40 for s in range(3))


def test_the_repetition_penalty_stops_a_token_the_model_would_repeat(trained):
    model, vocab, _ = load_checkpoint(trained[1])
    token = vocab.itos[len(SPECIALS)]  # any token of the vocabulary, at either tokenization level
    with torch.no_grad():
        model.decoder.bias[vocab.stoi[token]] = 8.0  # by far the likeliest next token, whatever came before

    def adjacent_repeats(**guard) -> float:
        outs = [generate(model, vocab, [token], 30, top_k=0, seed=s, **guard) for s in range(5)]
        return sum(a == b for out in outs for a, b in zip(out, out[1:])) / sum(len(out) - 1 for out in outs)

    assert adjacent_repeats() > 0.9
    # penalised over a window of 1, its score right after itself is 8 / 20 = 0.4: it rarely follows itself
    assert adjacent_repeats(repetition_penalty=20.0, repetition_window=1) < 0.2


def test_generate_batch_rows_are_generates_samples(trained):
    model, vocab, tokenizer = load_checkpoint(trained[1])
    starts = [start_tokens(text, vocab, tokenizer) for text in ("天空", "下雨我爱你", "天空")]  # of unequal lengths
    seeds = [3, 4, 5]
    guard = {"repetition_penalty": 1.3, "repetition_window": 5, "no_repeat_ngram_size": 3}
    rows = generate_batch(model, vocab, starts, 20, seeds, temperature=1.2, top_p=0.9, **guard)
    singles = [
        generate(model, vocab, s, 20, temperature=1.2, top_p=0.9, seed=x, **guard) for s, x in zip(starts, seeds)
    ]
    assert rows == singles
    assert rows[0] != rows[2]  # same start, other seed


def test_generate_text_starts_with_the_start_word(trained):
    model, vocab, tokenizer = load_checkpoint(trained[1])
    text = generate_text(model, vocab, tokenizer, "天空", 5, seed=1)
    assert text.startswith("天空")
    assert "<" not in text.replace("\n", "")


# --- the command line ---------------------------------------------------------------------------


def run_generate(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run(
        [sys.executable, "-m", "tasks.generate", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_cli_generates_from_a_model_file(trained, tmp_path):
    params, model_pt = trained
    result = run_generate(tmp_path, "--model", str(model_pt), "--start", "天空", "--length", "5", "--seed", "1")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("天空")
    # the same sampling as in-process with the CLI's defaults (SAMPLING_DEFAULTS, the repetition guard on)
    model, vocab, tokenizer = load_checkpoint(model_pt)
    sampling = {k: v for k, v in SAMPLING_DEFAULTS.items() if k not in ("length", "seed")}
    assert sampling["repetition_penalty"] > 1
    expected = generate_text(model, vocab, tokenizer, "天空", 5, seed=1, **sampling)
    assert result.stdout.rstrip("\n") == expected
    assert "Traceback" not in result.stderr
    # an option given on the command line wins over the default
    flags = ("--temperature", "0.5", "--top-k", "3", "--repetition-penalty", "1.0", "--no-repeat-ngram-size", "2")
    result = run_generate(tmp_path, "--model", str(model_pt), "--start", "天空", "--length", "8", "--seed", "2", *flags)
    assert result.returncode == 0, result.stderr
    given = {"temperature": 0.5, "top_k": 3, "repetition_penalty": 1.0, "no_repeat_ngram_size": 2}
    expected = generate_text(model, vocab, tokenizer, "天空", 8, seed=2, **{**sampling, **given})
    assert result.stdout.rstrip("\n") == expected


def test_cli_unknown_start_is_a_one_line_error(trained, tmp_path):
    _, model_pt = trained
    result = run_generate(tmp_path, "--model", str(model_pt), "--start", "zzzz", "--length", "5", "--seed", "1")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:") and "zzzz" in lines[0]
    assert result.stdout == ""


# --- start texts it cannot use, and the checkpoint's segmentation backend -------------------------


@pytest.mark.parametrize("text", ["", "   ", "\u3000"])
def test_start_tokens_blank_is_an_empty_error(text):
    with pytest.raises(PipelineError, match="the start text is empty"):
        start_tokens(text, small_vocab(), WORD_TOKENIZER)
    assert start_status(text, small_vocab(), WORD_TOKENIZER) == ("empty", [])
    assert start_status("zzzz", small_vocab(), WORD_TOKENIZER) == ("unknown", [])


def test_start_tokens_segment_with_the_checkpoints_backend():
    """A model trained with rjieba is started with rjieba: `4-5` is one token there, three in jieba."""
    vocab = Vocab(SPECIALS + ["孩子", "4-5", "岁", "4", "-", "5"])
    assert start_tokens("孩子4-5岁", vocab, {**WORD_TOKENIZER, "backend": "rjieba"}) == ["孩子", "4-5", "岁"]
    assert start_tokens("孩子4-5岁", vocab, {**WORD_TOKENIZER, "backend": "jieba"}) == ["孩子", "4", "-", "5", "岁"]
    assert start_tokens("孩子4-5岁", vocab, WORD_TOKENIZER) == ["孩子", "4", "-", "5", "岁"]  # old checkpoints: jieba


class Context:
    def __init__(self, checkpoint: Path):
        self.artifacts = {"checkpoint": str(checkpoint)}


def test_pyfunc_answers_a_status_per_row_instead_of_failing_the_batch(trained):
    import io
    import json

    import pandas as pd
    from mlflow.pyfunc.scoring_server import predictions_to_json

    from tasks.serving.lyrics_pyfunc import LyricsGenerator

    served = LyricsGenerator()
    served.load_context(Context(trained[1]))
    starts = ["天空", "", "zzzz", None, "   ", "天空"]
    out = served.predict(None, pd.DataFrame({"start": starts}), params={"length": 5, "seed": 1})
    assert list(out.columns) == ["start", "lyrics", "status"] and len(out) == len(starts)
    assert out["status"].tolist() == ["ok", "empty", "unknown", "empty", "empty", "ok"]
    assert out["lyrics"].iloc[1:5].isna().all()
    buffer = io.StringIO()
    predictions_to_json(out, buffer)  # what the scoring server sends back: null, not NaN
    answers = json.loads(buffer.getvalue())["predictions"]
    assert "NaN" not in buffer.getvalue() and answers[1] == {"start": "", "lyrics": None, "status": "empty"}
    assert answers[3] == {"start": None, "lyrics": None, "status": "empty"}
    model, vocab, tokenizer = load_checkpoint(trained[1])
    # row i is sampled with seed + i, as before: a bad row does not shift the others; a call that
    # sets no sampling gets SAMPLING_DEFAULTS (the repetition guard on)
    sampling = {k: v for k, v in SAMPLING_DEFAULTS.items() if k not in ("length", "seed")}
    assert out["lyrics"].iloc[0] == generate_text(model, vocab, tokenizer, "天空", 5, seed=1, **sampling)
    assert out["lyrics"].iloc[5] == generate_text(model, vocab, tokenizer, "天空", 5, seed=6, **sampling)
    # the guard is set per call like the rest of the sampling
    guard = {"repetition_penalty": 1.0, "repetition_window": 0, "no_repeat_ngram_size": 2}
    out = served.predict(None, pd.DataFrame({"start": ["天空"]}), params={"length": 12, "seed": 4, **guard})
    assert out["lyrics"].iloc[0] == generate_text(model, vocab, tokenizer, "天空", 12, seed=4, **{**sampling, **guard})


@pytest.mark.parametrize("start", ["", "  "])
def test_cli_empty_start_is_a_one_line_error(trained, tmp_path, start):
    _, model_pt = trained
    result = run_generate(tmp_path, "--model", str(model_pt), "--start", start, "--length", "5")
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert lines == ["error: --start is empty; pass a start word or phrase, e.g. --start 分手"], result.stderr


def test_cli_unknown_start_through_a_pyfunc_is_a_one_line_error(trained, tmp_path):
    import mlflow
    import pandas as pd
    from mlflow.models import infer_signature

    from tasks.serving.lyrics_pyfunc import SAMPLING_DEFAULTS, LyricsGenerator

    _, model_pt = trained
    saved = tmp_path / "pyfunc"
    example = pd.DataFrame({"start": ["天空"], "lyrics": ["天空..."], "status": ["ok"]})
    signature = infer_signature(example[["start"]], example, params=SAMPLING_DEFAULTS)  # as lyrics' register does
    mlflow.pyfunc.save_model(
        saved, python_model=LyricsGenerator(), artifacts={"checkpoint": str(model_pt)}, signature=signature
    )
    env_store = f"sqlite:///{tmp_path / 'unused.db'}"  # a local model path needs no store, but the CLI asks for one
    result = subprocess.run(
        [sys.executable, "-m", "tasks.generate", "--model", str(saved), "--start", "zzzz", "--length", "5"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MLFLOW_TRACKING_URI": env_store},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and result.stdout == "", result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    line = lines[0]
    assert line.startswith("error: start text 'zzzz'") and "unknown" in line
