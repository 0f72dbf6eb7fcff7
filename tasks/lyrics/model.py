"""The language model: embedding → a stack of RNN/GRU/LSTM layers → a full or adaptive softmax,
with the AWD-LSTM regularisers (Merity, Keskar & Socher 2018, "Regularizing and Optimizing LSTM
Language Models") that let a small corpus train a large model: embedding dropout (whole words),
locked (variational) dropout with one mask for every time step, and DropConnect on the
hidden-to-hidden weights (`weight_dropout`)."""

import re

import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Dropout with one mask per sequence, shared by all its time steps (Gal & Ghahramani 2016):
    x (T, B, H) → (T, B, H). A fresh mask per step would let the recurrence average the noise away."""
    if not training or p == 0:
        return x
    mask = x.new_empty(1, x.size(1), x.size(2)).bernoulli_(1 - p) / (1 - p)  # (1, B, H)
    return x * mask


def embedding_dropout(embedding: nn.Embedding, x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Drop whole words: every occurrence of a dropped id in the batch gets a zero vector, the rest
    are scaled by 1/(1-p). ids (T, B) → (T, B, E)."""
    weight = embedding.weight
    if training and p > 0:
        mask = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)  # (V, 1)
        weight = weight * mask
    return F.embedding(x, weight, embedding.padding_idx)


class RNNLanguageModel(nn.Module):
    """Embedding → `num_layers` single-layer RNN/GRU/LSTM modules → output layer: a full softmax
    (a linear decoder, optionally tied to the embedding) or an adaptive softmax
    (`nn.AdaptiveLogSoftmaxWithLoss`: frequent tokens in a full head, rarer ones in smaller tail
    clusters, so a large vocabulary costs less per token).

    Layers are separate modules so DropConnect can drop each one's hidden-to-hidden weights, and so
    the top layer can output `embedding_size` when the weights are tied (AWD-LSTM: inner layers may
    be wider than the embedding).

    Sequences are time-major, PTB style: input (T, B) token ids. `forward(x, hidden)` gives scores
    (T, B, V) (logits for softmax, log-probabilities for adaptive: either feeds a softmax for
    sampling); `forward(x, hidden, targets)` gives the mean NLL of the (T, B) targets, which is what
    training and perplexity use (the adaptive output never builds the full (T, B, V) then).
    `hidden` is a list with one state per layer (a (h, c) tuple for LSTM), None to start fresh.
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
        embedding_dropout: float = 0.0,
        weight_dropout: float = 0.0,
    ):
        super().__init__()
        if tie_weights and output == "adaptive":
            raise ValueError("tie_weights cannot apply to the adaptive output")
        self.cell, self.output = cell, output
        self.dropout, self.embedding_dropout, self.weight_dropout = dropout, embedding_dropout, weight_dropout
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        top_size = embedding_size if tie_weights else hidden_size  # tied: the top layer feeds the embedding matrix
        sizes = [embedding_size] + [hidden_size] * (num_layers - 1) + [top_size]
        self.rnns = nn.ModuleList(CELLS[cell](sizes[i], sizes[i + 1]) for i in range(num_layers))
        if output == "adaptive":
            self.adaptive = nn.AdaptiveLogSoftmaxWithLoss(top_size, vocab_size, list(adaptive_cutoffs or []))
        else:
            self.decoder = nn.Linear(top_size, vocab_size)
            if tie_weights:
                # Tying halves the parameters and regularises small corpora (Press & Wolf, 2017).
                self.decoder.weight = self.embedding.weight
        self.init_weights()

    def init_weights(self) -> None:
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        if self.output == "softmax":
            nn.init.zeros_(self.decoder.bias)

    def run_layer(self, i: int, x: torch.Tensor, state):
        """Layer i on (T, B, H_in) → (T, B, H_out), with DropConnect on its hidden-to-hidden weights
        while training: one dropped copy of weight_hh for the whole window, the module's own
        parameter untouched (functional_call), so cuDNN still runs the fused kernel."""
        rnn = self.rnns[i]
        if not (self.training and self.weight_dropout > 0):
            return rnn(x, state)
        dropped = {"weight_hh_l0": F.dropout(rnn.weight_hh_l0, self.weight_dropout, training=True)}
        return functional_call(rnn, dropped, (x, state), strict=False)

    def features(self, x: torch.Tensor, hidden=None):
        """Top-layer outputs (T, B, H_top) for ids (T, B): what the output layer reads (and the
        continuous cache remembers), and the new per-layer states."""
        out = embedding_dropout(self.embedding, x, self.embedding_dropout, self.training)  # (T, B, E)
        out = locked_dropout(out, self.dropout, self.training)
        hidden = hidden or [None] * len(self.rnns)
        states = []
        for i in range(len(self.rnns)):
            out, state = self.run_layer(i, out, hidden[i])  # (T, B, H_i)
            states.append(state)
            out = locked_dropout(out, self.dropout, self.training)  # between layers and on the top output
        return out, states

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Parameters from the bottom of the network to the top, for discriminative learning rates
        (ULMFiT): the embedding, each recurrent layer, the output layer. A tied embedding is the
        output layer's matrix too, so it goes to the top group: at the bottom group's small rate the
        output distribution could barely move to the new domain."""
        head = list((self.adaptive if self.output == "adaptive" else self.decoder).parameters())
        tied = any(p is self.embedding.weight for p in head)
        bottom = [] if tied else [[self.embedding.weight]]
        return [*bottom, *[list(r.parameters()) for r in self.rnns], head]

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
    """Cut the graph between BPTT windows while carrying the state (per layer; tuples for LSTM)."""
    if hidden is None:
        return None
    if isinstance(hidden, (tuple, list)):
        return type(hidden)(detach_hidden(h) for h in hidden)
    return hidden.detach()


STACKED_RNN_KEY = re.compile(r"^rnn\.(weight|bias)_(ih|hh)_l(\d+)$")


def upgrade_state_dict(state: dict) -> dict:
    """Weights saved before the layers were separate modules (one stacked `rnn`, keys
    `rnn.weight_ih_l1`) → the per-layer names (`rnns.1.weight_ih_l0`); the tensors are the same."""
    renamed = {}
    for key, value in state.items():
        match = STACKED_RNN_KEY.match(key)
        renamed[f"rnns.{match[3]}.{match[1]}_{match[2]}_l0" if match else key] = value
    return renamed
