"""The classifier on a pretrained language model's encoder (ULMFiT, Howard & Ruder 2018): the LM's
embedding and recurrent layers read the review, concat pooling (the last step's output, the max
and the mean over the valid steps) summarises it, and a small head of two linear layers labels it.

The encoder runs forwards only, so padding after a review cannot change its outputs: there is no
need to pack. Its AWD-LSTM regularisers (locked, embedding and weight dropout) stay on while it
fine-tunes. Layer groups (embedding, each recurrent layer, the head) serve discriminative learning
rates and gradual unfreezing (`freeze_to`)."""

import torch
from torch import nn

from tasks.lyrics.model import RNNLanguageModel


class EncoderClassifier(nn.Module):
    """Batch-major like the RNN classifier: input (B, T) padded ids with lengths (B,), logits (B, C).

    `lm_args`: the language model's constructor args."""

    def __init__(
        self, lm_args: dict, num_classes: int, head_hidden: int = 50, head_dropout: float = 0.2, max_len: int = 400
    ):
        super().__init__()
        self.num_classes, self.max_len = num_classes, max_len
        self.lm = RNNLanguageModel(**lm_args)
        # The LM's output layer is kept only so a fine-tuned LM's state dict loads as it is: frozen
        # for good (a tied decoder's matrix is the embedding, which stays trainable).
        for p in (self.lm.adaptive if self.lm.output == "adaptive" else self.lm.decoder).parameters():
            if p is not self.lm.embedding.weight:
                p.requires_grad_(False)
        features = 3 * self.lm.rnns[-1].hidden_size  # last ++ max ++ mean
        # ULMFiT's PoolingLinearClassifier: batch norm and dropout before each linear layer.
        self.head = nn.Sequential(
            nn.BatchNorm1d(features),
            nn.Dropout(head_dropout),
            nn.Linear(features, head_hidden),
            nn.ReLU(),
            nn.BatchNorm1d(head_hidden),
            nn.Dropout(head_dropout / 2),
            nn.Linear(head_hidden, num_classes),
        )

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.lm.features(x.t())  # (T, B, H): the encoder is time-major
        out = out.transpose(0, 1)  # (B, T, H)
        lengths = lengths.to(x.device)
        valid = torch.arange(x.size(1), device=x.device)[None, :] < lengths[:, None]  # (B, T)
        last = out[torch.arange(x.size(0), device=x.device), lengths - 1]  # (B, H)
        maxed = out.masked_fill(~valid[..., None], float("-inf")).max(dim=1).values  # (B, H)
        mean = (out * valid[..., None]).sum(dim=1) / lengths[:, None]  # (B, H)
        return self.head(torch.cat([last, maxed, mean], dim=-1))  # (B, C)

    def layer_groups(self) -> list[list[nn.Parameter]]:
        """Bottom to top: the embedding, each recurrent layer, the head. The LM's output layer is
        in no group: the classifier never uses it, so it is neither trained nor decayed."""
        return [[self.lm.embedding.weight], *[list(r.parameters()) for r in self.lm.rnns], list(self.head.parameters())]

    def freeze_to(self, n_trainable: int) -> None:
        """Train only the top `n_trainable` layer groups (gradual unfreezing: the head first, then
        one more layer each epoch, so the new head cannot wreck the pretrained layers at its start)."""
        groups = self.layer_groups()
        for i, params in enumerate(groups):
            for p in params:
                p.requires_grad_(i >= len(groups) - n_trainable)
