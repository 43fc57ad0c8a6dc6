"""Sound lower bounds of linear functions of a ReLU network's output over input boxes, for many boxes at
once: interval bound propagation (IBP) and CROWN-style linear relaxation with back-substitution.

CROWN (Zhang et al., "Efficient Neural Network Robustness Certification with General Activation
Functions", NeurIPS 2018), written here. For a lower bound of  c·y + d  over a box:
  * take the linear function over the last layer's input, Λ = c W_L, and go back layer by layer;
  * through an affine layer h = W z + b:  const += Λ b,  Λ <- Λ W;
  * through z = relu(h) with pre-activation bounds l <= h <= u:
      stable neurons are exact (z = h for l >= 0, z = 0 for u <= 0);
      an unstable one (l < 0 < u) is bounded above by the chord  z <= u (h - l) / (u - l)  and below
      by  z >= α h  with α = 1 when u > -l, else 0 (CROWN's adaptive choice);
      a positive coefficient takes the lower line, a negative one the upper line (with its intercept);
  * at the input:  min over the box of Λ x = Λ⁺ lo + Λ⁻ hi.
Pre-activation bounds of every hidden layer come from the same back-substitution (rows +I and -I),
intersected with IBP's. All arithmetic is float64. The bounds are sound for the real-valued network;
they are exact for a box on which every ReLU is stable, which is why splitting the input box makes
them complete in the limit for low-dimensional inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from tenfold.autospec.relunet import ReluNet


class Bounds:
    """The bound computations for one network (weights held as float64 tensors)."""

    def __init__(self, net: ReluNet):
        self.net = net
        self.W = [torch.tensor(w, dtype=torch.float64) for w in net.weights]
        self.b = [torch.tensor(b, dtype=torch.float64) for b in net.biases]

    def interval(self, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """IBP pre-activation bounds (l, u) of every layer, each (B, n_k), for boxes (B, n_in)."""
        out = []
        for k, (w, b) in enumerate(zip(self.W, self.b, strict=True)):
            if k:
                lo, hi = out[-1][0].clamp(min=0), out[-1][1].clamp(min=0)
            mid, rad = (lo + hi) / 2 @ w.T + b, (hi - lo) / 2 @ w.abs().T
            out.append((mid - rad, mid + rad))
        return out

    def _back(self, lam: torch.Tensor, const: torch.Tensor, k: int, pre: list, lo, hi):
        """Lower bound of  lam · h_k + const  over the boxes, h_k the output of affine layer k.
        lam: (B, m, n_k). Returns (bound (B, m), the input coefficients (B, m, n_in))."""
        for j in range(k, -1, -1):
            const = const + lam @ self.b[j]
            lam = lam @ self.W[j]  # now over z_{j-1} (over x when j == 0)
            if j == 0:
                break
            lo_h, hi_h = pre[j - 1]
            unstable = (lo_h < 0) & (hi_h > 0)
            # the upper line's slope: the chord for unstable neurons, exact (1 or 0) for stable ones
            up = torch.where(
                hi_h <= 0, 0.0, torch.where(lo_h >= 0, 1.0, hi_h / (hi_h - lo_h).clamp(min=1e-30))
            )
            low = torch.where(unstable, (hi_h > -lo_h).double(), up)
            icpt = torch.where(unstable, -up * lo_h, torch.zeros_like(lo_h))  # chord intercept
            pos, neg = lam.clamp(min=0), lam.clamp(max=0)
            const = const + (neg * icpt[:, None, :]).sum(-1)
            lam = pos * low[:, None, :] + neg * up[:, None, :]
        bound = (
            const + (lam.clamp(min=0) * lo[:, None, :]).sum(-1) + (lam.clamp(max=0) * hi[:, None, :]).sum(-1)
        )
        return bound, lam

    def pre_activation(self, lo: torch.Tensor, hi: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """CROWN pre-activation bounds of the hidden layers, intersected with IBP's."""
        ibp = self.interval(lo, hi)
        pre: list[tuple[torch.Tensor, torch.Tensor]] = [ibp[0]]  # the first layer: intervals are exact
        B = lo.shape[0]
        for k in range(1, len(self.W) - 1):
            n = self.W[k].shape[0]
            eye = torch.eye(n, dtype=torch.float64)
            lam = torch.cat([eye, -eye]).expand(B, 2 * n, n)
            bound, _ = self._back(lam, torch.zeros(B, 2 * n, dtype=torch.float64), k, pre, lo, hi)
            lower, upper = bound[:, :n], -bound[:, n:]
            pre.append((torch.maximum(lower, ibp[k][0]), torch.minimum(upper, ibp[k][1])))
        return pre

    def lower(
        self, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Lower bounds of  C y + d  over each box: (B, m), and the input coefficients (B, m, n_in) of
        the linear bound (what input splitting uses to pick a dimension)."""
        lo_t = torch.as_tensor(np.atleast_2d(lo), dtype=torch.float64)
        hi_t = torch.as_tensor(np.atleast_2d(hi), dtype=torch.float64)
        B = lo_t.shape[0]
        pre = self.pre_activation(lo_t, hi_t)
        lam = torch.as_tensor(C, dtype=torch.float64).expand(B, *C.shape)
        const = torch.as_tensor(d, dtype=torch.float64).expand(B, len(d))
        bound, coef = self._back(lam, const, len(self.W) - 1, pre, lo_t, hi_t)
        return bound.numpy(), coef.numpy()

    def interval_lower(self, lo: np.ndarray, hi: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Lower bounds of  C y + d  from IBP, the last layer applied symbolically (exact for it)."""
        lo_t = torch.as_tensor(np.atleast_2d(lo), dtype=torch.float64)
        hi_t = torch.as_tensor(np.atleast_2d(hi), dtype=torch.float64)
        pre = self.interval(lo_t, hi_t)
        if len(self.W) == 1:
            z_lo, z_hi, w = lo_t, hi_t, torch.as_tensor(C, dtype=torch.float64) @ self.W[0]
        else:
            z_lo, z_hi = pre[-2][0].clamp(min=0), pre[-2][1].clamp(min=0)
            w = torch.as_tensor(C, dtype=torch.float64) @ self.W[-1]
        const = torch.as_tensor(C, dtype=torch.float64) @ self.b[-1] + torch.as_tensor(d, dtype=torch.float64)
        low = z_lo @ w.clamp(min=0).T + z_hi @ w.clamp(max=0).T
        return (low + const).numpy()
