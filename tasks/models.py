"""The RNN-family language model. One class; the cell type is a constructor argument."""

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNLanguageModel(nn.Module):
    """Embedding → RNN/GRU/LSTM stack → linear decoder (optionally tied to the embedding).

    Sequences are time-major, PTB style: input (T, B) token ids, logits (T, B, V).
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, num_layers: int,
                 cell: str = "lstm", dropout: float = 0.0, tie_weights: bool = False):
        super().__init__()
        if tie_weights and embedding_size != hidden_size:
            raise ValueError("tie_weights needs embedding_size == hidden_size")
        self.cell = cell
        self.drop = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = CELLS[cell](embedding_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            # Tying halves the parameters and regularises small corpora (Press & Wolf, 2017).
            self.decoder.weight = self.embedding.weight
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)

    def forward(self, x: torch.Tensor, hidden=None):
        emb = self.drop(self.embedding(x))        # (T, B, E)
        out, hidden = self.rnn(emb, hidden)       # (T, B, H)
        logits = self.decoder(self.drop(out))     # (T, B, V)
        return logits, hidden


def detach_hidden(hidden):
    """Cut the graph between BPTT windows while carrying the state (tuple for LSTM)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()
