"""The language model: embedding → RNN/GRU/LSTM stack → a full or adaptive softmax output."""

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNLanguageModel(nn.Module):
    """Embedding → RNN/GRU/LSTM stack → output layer: a full softmax (a linear decoder, optionally
    tied to the embedding) or an adaptive softmax (`nn.AdaptiveLogSoftmaxWithLoss`: frequent words
    in a full head, rarer ones in smaller tail clusters, so a large vocabulary costs less per token).

    Sequences are time-major, PTB style: input (T, B) token ids. `forward(x, hidden)` gives scores
    (T, B, V) (logits for softmax, log-probabilities for adaptive: either feeds a softmax for
    sampling); `forward(x, hidden, targets)` gives the mean NLL of the (T, B) targets, which is what
    training and perplexity use (the adaptive output never builds the full (T, B, V) then).
    """

    # The continuous cache's settings (tasks/lyrics/neural_cache.py), fitted after training and kept in the
    # checkpoint beside the weights; None: the model predicts alone.
    cache: dict | None = None

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int,
        cell: str = "lstm",
        dropout: float = 0.0,
        tie_weights: bool = False,
        output: str = "softmax",
        adaptive_cutoffs: list[int] | None = None,
    ):
        super().__init__()
        if tie_weights and embedding_size != hidden_size:
            raise ValueError("tie_weights needs embedding_size == hidden_size")
        if tie_weights and output == "adaptive":
            raise ValueError("tie_weights cannot apply to the adaptive output")
        self.cell, self.output = cell, output
        self.drop = nn.Dropout(dropout)
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        self.rnn = CELLS[cell](embedding_size, hidden_size, num_layers, dropout=dropout if num_layers > 1 else 0.0)
        if output == "adaptive":
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(hidden_size, vocab_size, list(adaptive_cutoffs or []))
        else:
            self.decoder = nn.Linear(hidden_size, vocab_size)
            if tie_weights:
                # Tying halves the parameters and regularises small corpora (Press & Wolf, 2017).
                self.decoder.weight = self.embedding.weight
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.output == "softmax":
            nn.init.zeros_(self.decoder.bias)

    def features(self, x: torch.Tensor, hidden=None):
        """Top-layer outputs (T, B, H) for ids (T, B): what the output layer reads (and the
        continuous cache remembers)."""
        emb = self.drop(self.embedding(x))  # (T, B, E)
        out, hidden = self.rnn(emb, hidden)  # (T, B, H)
        return self.drop(out), hidden

    def target_log_probs(self, out: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """log p(targets) (T, B) from top-layer outputs (T, B, H)."""
        flat = out.flatten(0, 1)  # (T*B, H)
        if self.output == "adaptive":
            return self.adaptive(flat, targets.flatten()).output.view(targets.shape)
        logp = torch.log_softmax(self.decoder(flat).float(), dim=-1)  # (T*B, V)
        return logp.gather(1, targets.flatten()[:, None]).view(targets.shape)

    def scores(self, out: torch.Tensor) -> torch.Tensor:
        """(T, B, V) next-token scores from top-layer outputs (T, B, H): logits for the softmax
        output, log-probabilities for the adaptive one (a softmax over either gives the probabilities)."""
        if self.output == "adaptive":
            return self.adaptive.log_prob(out.flatten(0, 1)).view(*out.shape[:2], -1)
        return self.decoder(out)

    def forward(self, x: torch.Tensor, hidden=None, targets: torch.Tensor | None = None):
        out, hidden = self.features(x, hidden)  # (T, B, H)
        if targets is None:
            return self.scores(out), hidden  # (T, B, V)
        if self.output == "adaptive":  # never builds the full (T, B, V)
            return self.adaptive(out.flatten(0, 1), targets.flatten()).loss, hidden  # () mean NLL
        logits = self.decoder(out)  # (T, B, V)
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), targets.flatten()), hidden


def detach_hidden(hidden):
    """Cut the graph between BPTT windows while carrying the state (tuple for LSTM)."""
    if hidden is None:
        return None
    if isinstance(hidden, tuple):
        return tuple(h.detach() for h in hidden)
    return hidden.detach()
