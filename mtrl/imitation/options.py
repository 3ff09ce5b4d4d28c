"""Building blocks of MH-AIRL (Chen et al., ICML 2023) that do not depend on the training loop.

- :func:`viterbi`: the most likely option sequence of a demonstration under a hierarchical
  policy (the E-step for demos without option labels; the MH-AIRL code's ``viterbi_path``).
  With K options, a dummy "no previous option" index K at t = 0,
  L_t(z) = log pi_L(a_t | s_t, z) and M_t(z', z) = log pi_H(z | s_t, z'):

      delta_0(z) = M_0(K, z) + L_0(z)
      delta_t(z) = L_t(z) + max_{z' < K} [delta_{t-1}(z') + M_t(z', z)],   psi_t(z) = the argmax
      z_{T-1} = argmax delta_{T-1},   z_{t-1} = psi_t(z_t)

- :func:`viterbi_batch`: the same recursion for a padded batch of trajectories at once (one
  Python step per time step instead of per time step and trajectory; the E-step's hot loop).
- :class:`ContextPosterior`: q(c | trajectory) over a discrete context (the task), a
  bidirectional LSTM over (s_t, a_t) whose per-step logits are averaged over time (the code's
  ``ContextPosterior`` for discrete contexts). Its log-likelihood is MH-AIRL's mutual-information
  reward; for unlabelled demos it infers each demo's task.

Both are used by the MH-AIRL reward model (:mod:`mtrl.imitation.mhairl`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def viterbi(log_low: torch.Tensor, log_high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Most likely options of one trajectory.

    Args:
        log_low: ``[T, K]``, log pi_L(a_t | s_t, z) for every option z.
        log_high: ``[T, K + 1, K]``, log pi_H(z | s_t, z') for every previous option z' (row K:
            the episode's first step, no previous option).

    Returns:
        ``(options [T], log p*)``: the argmax option sequence and its joint log-probability.
    """
    T, K = log_low.shape
    if log_high.shape != (T, K + 1, K):
        raise ValueError(f"log_high must be [T, K+1, K] = [{T}, {K + 1}, {K}], got {list(log_high.shape)}")
    z, logp = viterbi_batch(log_low[None], log_high[None], torch.tensor([T]))
    return z[0], logp[0]


def viterbi_batch(log_low: torch.Tensor, log_high: torch.Tensor,
                  lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`viterbi` for ``E`` trajectories padded to a common length ``L`` (the recursion).

    Args:
        log_low: ``[E, L, K]``; log_high: ``[E, L, K + 1, K]``; lengths: ``[E]`` (each >= 1).

    Returns:
        ``([E, L] options, [E] log p*)`` (options past a trajectory's length are 0). Trajectory e's path is the
        one :func:`viterbi` gives on its first ``lengths[e]`` steps: past its end the recursion
        carries delta unchanged, so the backtrack starts from the argmax at its own last step.
    """
    E, L, K = log_low.shape
    if log_high.shape != (E, L, K + 1, K):
        raise ValueError(f"log_high must be [E, L, K+1, K] = [{E}, {L}, {K + 1}, {K}], got {list(log_high.shape)}")
    delta = log_high[:, 0, K] + log_low[:, 0]  # [E, K]
    back = torch.zeros(E, L, K, dtype=torch.long)
    ident = torch.arange(K).expand(E, K)
    for t in range(1, L):
        best, arg = (delta[:, :, None] + log_high[:, t, :K]).max(1)  # over z'
        live = (t < lengths)[:, None]
        delta = torch.where(live, best + log_low[:, t], delta)
        back[:, t] = torch.where(live, arg, ident)  # past the end: z_{t-1} = z_t (a no-op chain)
    z = torch.zeros(E, L, dtype=torch.long)
    logp, cur = delta.max(1)
    z[:, L - 1] = cur
    for t in range(L - 1, 0, -1):
        cur = back[:, t].gather(1, cur[:, None]).squeeze(1)
        z[:, t - 1] = cur
    return z * (torch.arange(L)[None] < lengths[:, None]), logp


class ContextPosterior(nn.Module):
    """q(c | tau) for a discrete context c in {0..C-1}: BiLSTM over ``[s_t, a_t]``, per-step logits
    averaged over time. ``forward`` takes a padded batch ``[B, T, D]`` with lengths ``[B]``."""

    def __init__(self, in_dim: int, num_contexts: int, hidden: int = 64):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True, bidirectional=True)
        self.head = nn.Linear(2 * hidden, num_contexts)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log-probabilities ``[B, C]`` of the context of each trajectory."""
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        mask = (torch.arange(x.shape[1])[None] < lengths[:, None]).float()
        logits = (self.head(out) * mask[..., None]).sum(1) / lengths[:, None].float()
        return F.log_softmax(logits, -1)

    def loss(self, x: torch.Tensor, lengths: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of the true contexts (trained on the policy's own rollouts)."""
        return F.nll_loss(self(x, lengths), contexts)
