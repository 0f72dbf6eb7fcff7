"""Lyrics generation: load a self-describing checkpoint, segment the start text as training did,
sample with a repetition guard (a CTRL-style repetition penalty over a recent window, no repeated
n-grams), temperature, top-k and nucleus (top-p) filtering, render tokens as lines."""

import json
import re
from pathlib import Path

import torch

from tasks.common.errors import PipelineError
from tasks.lyrics.model import RNNLanguageModel, upgrade_state_dict
from tasks.text.segment import segment
from tasks.text.vocab import EOS, SPECIALS, Vocab

LATIN = re.compile(r"[A-Za-z0-9']")


# The defaults of a call that sets nothing. Evaluate chooses the sampling of each trained model on
# validation (reports/lyrics/sampling.json); `sampling_defaults` reads that choice, for the registered
# signature's defaults. These are the fallbacks, near what that choice was for the word and the
# character model on the Jay Chou lyrics (temperature 1, no top-k at 0.9 nucleus), guard on.
SAMPLING_DEFAULTS = {
    "length": 50,
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 0.9,
    "repetition_penalty": 1.2,
    "repetition_window": 20,
    "no_repeat_ngram_size": 0,
    "seed": -1,
}


def sampling_defaults(sampling_json: str | Path | None = None) -> dict:
    """SAMPLING_DEFAULTS with the setting evaluate chose on validation (its sampling.json: `chosen`
    and `repetition_window`) when the file exists: the inference params a registered version should
    declare, so a call that sets nothing samples as evaluate measured."""
    path = Path(sampling_json) if sampling_json else None
    if path is None or not path.is_file():
        return dict(SAMPLING_DEFAULTS)
    report = json.loads(path.read_text(encoding="utf-8"))
    chosen = {k: v for k, v in report["chosen"].items() if k in SAMPLING_DEFAULTS}
    return {**SAMPLING_DEFAULTS, **chosen, "repetition_window": report["repetition_window"]}


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[RNNLanguageModel, Vocab, dict]:
    """A self-describing model.pt → (model in eval mode, its vocab, the tokenizer settings)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = RNNLanguageModel(**ckpt["model_args"])
    model.load_state_dict(upgrade_state_dict(ckpt["state_dict"]))  # also a model saved before the per-layer modules
    model.cache = ckpt.get("cache")  # absent from checkpoints written before the cache existed
    return model.to(device).eval(), Vocab(ckpt["itos"]), ckpt["tokenizer"]


def start_status(text: str, vocab: Vocab, tokenizer: dict) -> tuple[str, list[str]]:
    """("ok", tokens) | ("empty", []) for a blank start | ("unknown", []) when nothing of it is known.
    Segmented as the training data was (level, HMM, user dictionary, backend as the checkpoint
    records them; jieba for checkpoints older than the backend setting); a word the vocab lacks
    falls back to its characters that it has."""
    if not text.strip():
        return "empty", []
    tokens = []
    for tok in segment(
        text, tokenizer["level"], tokenizer["hmm"], tokenizer.get("user_dict"), tokenizer.get("backend", "jieba")
    ):
        if tok in vocab.stoi:
            tokens.append(tok)
        else:
            tokens += [ch for ch in tok if ch in vocab.stoi]
    return ("ok", tokens) if tokens else ("unknown", [])


def start_tokens(text: str, vocab: Vocab, tokenizer: dict) -> list[str]:
    """The start text's in-vocab tokens (see `start_status`); a clear error when it is blank or
    nothing of it is known."""
    status, tokens = start_status(text, vocab, tokenizer)
    examples = " ".join(t for t in vocab.itos[len(SPECIALS) : len(SPECIALS) + 8])
    if status == "empty":
        raise PipelineError(f"the start text is empty; pass a start word or phrase, e.g. one of: {examples}")
    if status == "unknown":
        raise PipelineError(f"start text {text!r} has no word or character the model knows; try one of: {examples}")
    return tokens


def filter_logits(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """(..., V) logits → a new tensor: divided by the temperature, then every token outside the top k
    and outside the nucleus (the fewest tokens whose probability reaches top_p) set to -inf."""
    logits = logits.float() / max(temperature, 1e-6)
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = torch.softmax(sorted_logits, dim=-1)
        drop_sorted = probs.cumsum(-1) - probs > top_p  # keep the token that crosses top_p
        logits = logits.masked_fill(torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted), float("-inf"))
    return logits


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator) -> int:
    """Sample one id from (V,) logits with temperature, then top-k and nucleus (top-p) filtering."""
    return int(
        torch.multinomial(torch.softmax(filter_logits(logits, temperature, top_k, top_p), -1), 1, generator=generator)
    )


def apply_repetition_penalty(logits: torch.Tensor, recent: list[int], penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019, as Hugging Face's `repetition_penalty`): the
    score of every token in `recent` is divided by `penalty` when positive, multiplied when negative,
    so it becomes less likely either way (log-probabilities, all negative, work too). (V,) → a new
    (V,); 1.0: off."""
    if penalty == 1.0 or not recent:
        return logits
    logits = logits.clone()
    ids = torch.tensor(sorted(set(recent)))
    seen = logits[ids]
    logits[ids] = torch.where(seen > 0, seen / penalty, seen * penalty)
    return logits


def repeated_ngram_ids(ids: list[int], n: int) -> list[int]:
    """The tokens that would complete an n-gram already in `ids` (Hugging Face's
    `no_repeat_ngram_size`): those that followed an earlier occurrence of the last n - 1 tokens."""
    if n <= 0 or len(ids) < n - 1:
        return []
    prefix = tuple(ids[len(ids) - n + 1 :])
    return [ids[i + n - 1] for i in range(len(ids) - n + 1) if tuple(ids[i : i + n - 1]) == prefix]


def guard_repeats(
    logits: torch.Tensor, ids: list[int], eos: int, penalty: float, window: int, ngram: int
) -> torch.Tensor:
    """The repetition guard on one row's (V,) logits given its tokens so far: the penalty on the
    last `window` tokens (0: all; <eos> exempt), then the no-repeat n-gram ban (skipped where it
    would ban every token still allowed)."""
    recent = ids[-window:] if window > 0 else ids
    logits = apply_repetition_penalty(logits, [i for i in recent if i != eos], penalty)
    repeats = repeated_ngram_ids(ids, ngram)
    if repeats and torch.isfinite(logits).sum() > len(set(repeats)):
        logits = logits.index_fill(0, torch.tensor(repeats), float("-inf"))
    return logits


def cat_states(states: list):
    """Per-sequence recurrent states (tensors (L, 1, H), or tuples / lists of them) → one batch (L, B, H)."""
    first = states[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(states, dim=1)
    return type(first)(cat_states([s[i] for s in states]) for i in range(len(first)))


@torch.no_grad()
def generate_batch(
    model: RNNLanguageModel,
    vocab: Vocab,
    starts: list[list[str]],
    length: int,
    seeds: list[int | None],
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    repetition_window: int = 0,
    no_repeat_ngram_size: int = 0,
) -> list[list[str]]:
    """`generate` for several starts at once, one row each (row i drawn with its own generator
    seeded seeds[i], so a row is the sample `generate` gives for that start and seed): the model
    steps all rows together, which costs about what one row does on a CPU."""
    device = next(model.parameters()).device
    generators = [torch.Generator().manual_seed(s if s is not None else torch.seed()) for s in seeds]
    eos = vocab.stoi[EOS]
    banned = torch.tensor([vocab.stoi[t] for t in SPECIALS if t != EOS])
    ids = [vocab.encode(start) for start in starts]
    lasts, states = [], []
    for row in ids:  # each start on its own: they differ in length
        logits, hidden = model(torch.tensor(row, device=device).unsqueeze(1))  # (T, 1, V)
        lasts.append(logits[-1])  # (1, V)
        states.append(hidden)
    logits, hidden = torch.cat(lasts)[None], cat_states(states)  # (1, B, V)
    for _ in range(length):
        last = logits[-1].float().cpu()  # (B, V)
        last = torch.stack(
            [
                guard_repeats(last[b], row, eos, repetition_penalty, repetition_window, no_repeat_ngram_size)
                for b, row in enumerate(ids)
            ]
        )
        last[:, banned] = float("-inf")
        probs = torch.softmax(filter_logits(last, temperature, top_k, top_p), dim=-1)  # (B, V)
        step = [int(torch.multinomial(probs[b], 1, generator=g)) for b, g in enumerate(generators)]
        for row, idx in zip(ids, step):
            row.append(idx)
        logits, hidden = model(torch.tensor([step], device=device), hidden)  # (1, B, V)
    return [list(start) + vocab.decode(row[len(start) :]) for start, row in zip(starts, ids)]


def generate(
    model: RNNLanguageModel,
    vocab: Vocab,
    start: list[str],
    length: int,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
    repetition_penalty: float = 1.0,
    repetition_window: int = 0,
    no_repeat_ngram_size: int = 0,
) -> list[str]:
    """Continue `start` (in-vocab tokens) by `length` sampled tokens; returns start + continuation.
    <pad>, <unk> and <bos> are never sampled. The repetition guard: `repetition_penalty` (> 1 on)
    applies to the tokens of the last `repetition_window` (0: all, the start included), <eos> exempt
    (a line break is structure, not a repeat); `no_repeat_ngram_size` n > 0 bans a token that would
    repeat an n-gram of the text so far, unless that would ban every token left. The continuous
    cache is not used here: filled with the model's own samples it feeds them back and the text
    loops (tasks/neural_cache.py)."""
    guard = {"repetition_penalty": repetition_penalty, "repetition_window": repetition_window}
    return generate_batch(
        model,
        vocab,
        [start],
        length,
        [seed],
        temperature,
        top_k,
        top_p,
        **guard,
        no_repeat_ngram_size=no_repeat_ngram_size,
    )[0]


def render(tokens: list[str]) -> str:
    """Tokens → text: <eos> becomes a line break; Latin words keep a space between them."""
    text = ""
    for tok in tokens:
        if tok == EOS:
            text = text.rstrip(" ") + "\n"
        elif text and LATIN.match(tok) and LATIN.match(text[-1]):
            text += " " + tok
        else:
            text += tok
    return text.strip("\n")


def generate_text(model, vocab, tokenizer: dict, start: str, length: int, **sampling) -> str:
    return render(generate(model, vocab, start_tokens(start, vocab, tokenizer), length, **sampling))
