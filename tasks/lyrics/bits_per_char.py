"""Bits per character: a language model's cost of the test text in bits, per character of that text,
so a word model, a character model and a subword model can be compared on the same lyrics.

The test text is each test line's tokens concatenated (the cleaned line without its whitespace,
which every tokenization drops) followed by one line break: the <eos> token is one character.

    bits per char = (sum over scored tokens of -log2 p(token | history) + <unk> spelling) / characters

The scored tokens are those of the test stream after its first one (no model is asked to predict
the first token: that is what perplexity scores too); the characters are those of the scored tokens,
so the first token is left out of both (a few characters out of thousands).

<unk>: a model that maps a token to <unk> has predicted only "some rare token", not the token. Each
scored token the vocabulary lacks is charged, on top of the model's -log2 p(<unk>), the cost of
spelling it out with no model at all: log2(20992) ≈ 14.36 bits for each of its characters, a
uniform choice over the CJK Unified Ideographs block (U+4E00–U+9FFF). No language model spends
that much on a character it knows, so mapping text to <unk> cannot lower bits per character.
"""

import hashlib
import math

from tasks.text.vocab import Vocab

UNK_ALPHABET = 0x9FFF - 0x4E00 + 1  # 20992: CJK Unified Ideographs
UNK_CHAR_BITS = math.log2(UNK_ALPHABET)


def text_lines(token_lists: list[list[str]]) -> list[str]:
    """Each line's text: its tokens concatenated (whitespace, which tokenizing drops, stays out)."""
    return ["".join(tokens) for tokens in token_lists]


def token_texts(token_lists: list[list[str]]) -> list[str]:
    """The stream's tokens as the text each stands for, line breaks as "\\n" (what <eos> stands for)."""
    return [tok for tokens in token_lists for tok in [*tokens, "\n"]]


def scored_chars(token_lists: list[list[str]]) -> int:
    """Characters of the scored tokens: the whole test text less its first token's."""
    texts = token_texts(token_lists)
    return sum(len(t) for t in texts[1:])


def unk_spelling_bits(token_lists: list[list[str]], vocab: Vocab) -> float:
    """The extra charge for the scored tokens that `vocab` lacks (each maps to <unk>)."""
    texts = token_texts(token_lists)
    return sum(len(t) * UNK_CHAR_BITS for t in texts[1:] if t != "\n" and t not in vocab.stoi)


def bits_per_char(nll_nats: float, unk_bits: float, chars: int) -> float:
    """Total NLL (nats, summed over the scored tokens) plus the <unk> spelling, per character."""
    return (nll_nats / math.log(2) + unk_bits) / max(chars, 1)


def total_nll(perplexity: float, scored_tokens: int) -> float:
    """Summed NLL in nats from a perplexity exp(mean NLL) over `scored_tokens` targets."""
    return math.log(perplexity) * scored_tokens


def eval_text_hash(token_lists: list[list[str]]) -> str:
    """Identifies the test TEXT alone (lines joined), whatever the tokenization or vocabulary: a
    model trained on another tokenization can be re-scored on the same text when it matches."""
    return hashlib.sha256("".join(line + "\n" for line in text_lines(token_lists)).encode()).hexdigest()[:16]
