"""The review classifier: embedding → (bi)RNN/GRU/LSTM over packed sequences → pooling → linear."""

import torch
from torch import nn

CELLS = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}


class RNNClassifier(nn.Module):
    """Embedding → (bi)RNN/GRU/LSTM over packed variable-length sequences → pooling → linear.

    Batch-major: input (B, T) padded ids with lengths (B,), logits (B, C). Pooling: `attention`
    (additive, Bahdanau-style, padding masked), `max` (over valid steps) or `last` (final hidden
    state of each direction, which packing makes the last *valid* step).
    """

    def __init__(
        self,
        vocab_size: int,
        num_classes: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        pooling: str = "attention",
        dropout: float = 0.0,
        max_len: int = 100,
    ):
        super().__init__()
        self.cell, self.pooling, self.max_len, self.num_classes = cell, pooling, max_len, num_classes
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=0)
        self.rnn = CELLS[cell](
            embedding_size,
            hidden_size,
            num_layers,
            batch_first=True,
            bidirectional=bidirectional,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        out_size = hidden_size * (2 if bidirectional else 1)
        if pooling == "attention":
            self.attn_proj = nn.Linear(out_size, out_size)
            self.attn_score = nn.Linear(out_size, 1, bias=False)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(out_size, num_classes)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        emb = self.drop(self.embedding(x))  # (B, T, E)
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        packed_out, hidden = self.rnn(packed)
        if self.pooling == "last":
            h_n = hidden[0] if isinstance(hidden, tuple) else hidden  # (L*D, B, H)
            dirs = 2 if self.rnn.bidirectional else 1
            pooled = torch.cat(list(h_n[-dirs:]), dim=-1)  # (B, D*H)
        else:
            out, _ = nn.utils.rnn.pad_packed_sequence(
                packed_out, batch_first=True, total_length=x.size(1)
            )  # (B, T, D*H)
            pad = torch.arange(x.size(1), device=x.device)[None, :] >= lengths.to(x.device)[:, None]  # (B, T)
            if self.pooling == "max":
                pooled = out.masked_fill(pad[..., None], float("-inf")).max(dim=1).values  # (B, D*H)
            else:
                scores = self.attn_score(torch.tanh(self.attn_proj(out))).squeeze(-1)  # (B, T)
                weights = torch.softmax(scores.masked_fill(pad, float("-inf")), dim=1)  # (B, T)
                pooled = torch.bmm(weights.unsqueeze(1), out).squeeze(1)  # (B, D*H)
        return self.head(self.drop(pooled))  # (B, C)
