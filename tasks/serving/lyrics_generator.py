"""Lyrics generation: load a self-describing checkpoint, segment the start text as training did,
sample with temperature, top-k and nucleus (top-p) filtering, render tokens as lines."""

import re
from pathlib import Path

import torch

from tasks.common.errors import PipelineError
from tasks.lyrics.model import RNNLanguageModel
from tasks.text.segment import segment
from tasks.text.vocab import EOS, SPECIALS, Vocab

LATIN = re.compile(r"[A-Za-z0-9']")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[RNNLanguageModel, Vocab, dict]:
    """A self-describing model.pt → (model in eval mode, its vocab, the tokenizer settings)."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    model = RNNLanguageModel(**ckpt["model_args"])
    model.load_state_dict(ckpt["state_dict"])
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


def sample_next(logits: torch.Tensor, temperature: float, top_k: int, top_p: float, generator: torch.Generator) -> int:
    """Sample one id from (V,) logits with temperature, then top-k and nucleus (top-p) filtering."""
    logits = logits.float() / max(temperature, 1e-6)
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) > top_p  # keep the token that crosses top_p
        logits[order[drop]] = float("-inf")
    return int(torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator))


@torch.no_grad()
def generate(
    model: RNNLanguageModel,
    vocab: Vocab,
    start: list[str],
    length: int,
    temperature: float = 0.8,
    top_k: int = 0,
    top_p: float = 1.0,
    seed: int | None = None,
) -> list[str]:
    """Continue `start` (in-vocab tokens) by `length` sampled tokens; returns start + continuation.
    <pad>, <unk> and <bos> are never sampled. The continuous cache is not used here: filled with the
    model's own samples it feeds them back and the text loops (tasks/neural_cache.py)."""
    device = next(model.parameters()).device
    generator = torch.Generator().manual_seed(seed if seed is not None else torch.seed())
    banned = torch.tensor([vocab.stoi[t] for t in SPECIALS if t != EOS])
    x = torch.tensor(vocab.encode(start), device=device).unsqueeze(1)  # (T, 1)
    logits, hidden = model(x)  # (T, 1, V)
    out = list(start)
    for _ in range(length):
        last = logits[-1, 0].cpu()  # (V,)
        last[banned] = float("-inf")
        idx = sample_next(last, temperature, top_k, top_p, generator)
        out.append(vocab.itos[idx])
        logits, hidden = model(torch.tensor([[idx]], device=device), hidden)
    return out


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
