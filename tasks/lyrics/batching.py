"""Language-model batches, PTB style: one long id stream cut into B parallel columns, read in
windows of `bptt` steps so the hidden state can be carried from one window to the next."""

import torch

from tasks.text.vocab import EOS, Vocab


def lm_stream(token_lists: list[list[str]], vocab: Vocab) -> torch.Tensor:
    """Lines → one 1-D id tensor, each line followed by <eos> (the model learns line breaks)."""
    eos = vocab.stoi[EOS]
    ids: list[int] = []
    for tokens in token_lists:
        ids += vocab.encode(tokens)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.long)


def batchify(stream: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(N,) → (N // B, B): column b is a contiguous slice of the stream; the ragged tail is dropped."""
    n = stream.size(0) // batch_size
    return stream[: n * batch_size].view(batch_size, n).t().contiguous()


def get_batch(data: torch.Tensor, i: int, bptt: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Window starting at row i: inputs (T, B) and next-token targets (T, B)."""
    seq_len = min(bptt, data.size(0) - 1 - i)
    return data[i : i + seq_len], data[i + 1 : i + 1 + seq_len]
