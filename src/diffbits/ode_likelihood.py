"""Negative log-likelihood by the probability-flow ODE, beside the variational bound.

The ODE of a trained VDM defines a continuous density p(y) on R^D (Song et al. 2021, "Score-based
generative modeling through SDEs", Sec. 4.3 and App. D.2; compared with the bound in the VDM paper).
Process (docs/bound.md eq. 1; eqs. (1)-(6) here are docs/bound.md eqs. 15-20): ``z_t = alpha_t y + sigma_t eps``, ``alpha_t^2 = sigmoid(-gamma_t)``,
``sigma_t^2 = sigmoid(gamma_t)``. Written as an SDE ``dz = a(t) z dt + g(t) dW`` it has

  (1) ``a = d log alpha_t / dt = -1/2 gamma'(t) sigma_t^2``
  (2) ``g^2 = d sigma_t^2 / dt - 2 a sigma_t^2 = gamma' sigma^2 alpha^2 + gamma' sigma^4 = gamma'(t) sigma_t^2``

and its probability-flow ODE ``dz/dt = a z - g^2/2 * score``, with ``score = -eps_hat / sigma_t``, is

  (3) ``dz/dt = f(z, t) = 1/2 gamma'(t) sigma_t (eps_hat(z, gamma_t) - sigma_t z)``

(in ``x = z / alpha``, ``s = exp(gamma / 2)`` it is the samplers' ``dx/ds = eps_hat``).
The instantaneous change of variables (Chen et al. 2018) gives

  (4) ``log p_0(z_0) = log N(z_1; 0, I) + int_0^1 div f(z_t, t) dt``,
      ``div f = 1/2 gamma' sigma_t (div eps_hat - sigma_t D)``,

with ``div eps_hat`` by Hutchinson's estimator ``v^T (d eps_hat / dz) v`` (``E[v v^T] = I``,
Rademacher or Gaussian ``v``, fixed for a whole solve so that the integrand is smooth in t),
or exactly (D backward passes per call: small D only). Convention: the ODE runs from t = 0
(``gamma_0``) to t = 1, starting at the mean of ``q(z_0 | y)``, ``z_0 = alpha_0 y`` (no noise:
``sigma_0`` is tiny), so

  (5) ``log p(y) = log p_0(alpha_0 y) + D log alpha_0``.

Discrete data: ``x`` in K levels owns the bin ``[f(x) - 1/K, f(x) + 1/K]``, ``f(x) = (2x+1)/K - 1``
(``bound.data_to_signal``), of volume ``(2/K)^D``. Uniform dequantisation and Jensen give

  (6) ``-log P(x) = -log E_u[p(f(x) + u)] - D log(2/K) <= E_u[-log p(f(x) + u)] + D log(K/2)``,
      ``u ~ U(-1/K, 1/K)^D``,

so the bits/dim reported here, ``(-log p(y) + D log(K/2)) / (D ln 2)`` with one ``u`` per example,
are an unbiased estimate of an UPPER BOUND on the discrete NLL (as in Song et al. 2021 and the
VDM paper's comparison), not of the NLL itself. Expect it above the bound for a model that has
learned the discreteness: if p(y) is a mixture of N(f_k, e^gamma_0) bumps, eq. (6) adds about
``1/2 log(2 pi) + gamma_0/2 + e^-gamma_0 / (6 K^2) + log(K/2)`` nats/dim to -log P(x) (1.65 bits/dim
for digits, K = 17, gamma_0 = -8.25; at least 0.25 bits/dim, reached at e^-gamma_0 = 3 K^2).
The per-example vector-Jacobian products assume the denoiser treats the examples of a batch
independently (true of the nets here).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F
from torchdiffeq import odeint

from .progress import progress as progress_bar
from .bound import data_to_signal, nats_to_bpd
from .schedules import alpha_sigma
from .tensors import append_dims, sum_dims

__all__ = ["pf_ode_drift", "ode_nll", "ode_bpd", "evaluate_ode"]


def pf_ode_drift(model, z: Tensor, t: Tensor, cond=None) -> Tensor:
    """``f(z, t)`` of eq. (3); ``t`` a scalar or one time per example."""
    gamma, dgamma = model.schedule.gamma_and_derivative(t.to(z.dtype).expand(z.shape[0]))
    _, sigma = alpha_sigma(gamma)
    return 0.5 * append_dims(dgamma * sigma, z.dim()) * (model.eps_hat(z, gamma, cond) - append_dims(sigma, z.dim()) * z)


class _Dynamics:
    """The augmented state ``(z, int div f dt)`` of eqs. (3)-(4); counts its calls."""

    def __init__(self, model, cond, probes: Tensor | None):
        self.model, self.cond, self.probes, self.nfe = model, cond, probes, 0

    def _div_eps(self, eps: Tensor, z: Tensor) -> Tensor:
        """``div eps_hat`` per example: (B, P) for P probes, (B, 1) exactly."""
        if self.probes is None:  # exact trace: one vjp per dimension
            flat, cols = eps.flatten(1), []
            for i in range(flat.shape[1]):
                (g,) = torch.autograd.grad(flat[:, i].sum(), z, retain_graph=True)
                cols.append(g.flatten(1)[:, i])
            return torch.stack(cols, 1).sum(1, keepdim=True)
        out = []
        for p, v in enumerate(self.probes):
            (g,) = torch.autograd.grad(eps, z, v, retain_graph=p < len(self.probes) - 1)
            out.append(sum_dims(g * v))  # v^T J v
        return torch.stack(out, 1)

    def __call__(self, t: Tensor, state: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        self.nfe += 1
        z = state[0]
        with torch.no_grad():
            gamma, dgamma = self.model.schedule.gamma_and_derivative(t.to(z.dtype).expand(z.shape[0]))
            _, sigma = alpha_sigma(gamma)
        with torch.enable_grad():
            z = z.detach().requires_grad_(True)
            eps = self.model.eps_hat(z, gamma, self.cond)
            div_eps = self._div_eps(eps, z)
        c = 0.5 * dgamma * sigma
        dz = append_dims(c, z.dim()) * (eps.detach() - append_dims(sigma, z.dim()) * z.detach())  # eq. (3)
        ddiv = c[:, None] * (div_eps - sigma[:, None] * z[0].numel())  # eq. (4)
        return dz, ddiv.detach()


def _noise(shape, kind: str, generator, device, dtype) -> Tensor:
    dev = generator.device if generator is not None else device
    if kind == "rademacher":
        v = torch.randint(0, 2, shape, generator=generator, device=dev).to(dtype) * 2 - 1
    elif kind == "gaussian":
        v = torch.randn(shape, generator=generator, device=dev, dtype=dtype)
    else:
        raise ValueError(f"unknown probe distribution {kind!r}; use rademacher or gaussian")
    return v.to(device)


def ode_nll(
    model,
    y: Tensor,
    cond=None,
    probes: int = 1,
    exact_trace: bool = False,
    noise: str = "rademacher",
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    generator: torch.Generator | None = None,
) -> tuple[Tensor, int]:
    """``-log p(y)`` in nats per example of continuous ``y`` (B, *data_shape), eqs. (3)-(5).

    Returns ``(nats, nfe)``: ``nats`` of shape (B, P), one estimate per Hutchinson probe
    (P = ``probes``; P = 1 with ``exact_trace``), all probes sharing one solve; ``nfe`` the
    number of drift evaluations (each one network call and P or D backward passes).
    """
    if not exact_trace and probes < 1:
        raise ValueError("probes must be at least 1 (or use exact_trace)")
    gamma_0 = model.schedule.gamma_0.detach().to(y.dtype)
    log_alpha_0 = 0.5 * F.logsigmoid(-gamma_0)
    z_0 = log_alpha_0.exp() * y  # the ODE starts at the mean of q(z_0 | y)
    v = None if exact_trace else _noise((probes,) + tuple(y.shape), noise, generator, y.device, y.dtype)
    fn = _Dynamics(model, cond, v)
    t = torch.tensor([0.0, 1.0], dtype=y.dtype, device=y.device)
    delta_0 = torch.zeros(y.shape[0], 1 if exact_trace else probes, dtype=y.dtype, device=y.device)
    zs, deltas = odeint(fn, (z_0, delta_0), t, rtol=rtol, atol=atol, method=method)
    z_1, delta = zs[-1], deltas[-1]
    dims = y[0].numel()
    log_prior = -0.5 * sum_dims(z_1**2) - 0.5 * dims * math.log(2 * math.pi)  # log N(z_1; 0, I)
    log_p = log_prior[:, None] + delta + dims * log_alpha_0  # eqs. (4), (5)
    return -log_p, fn.nfe


def ode_bpd(
    model,
    x: Tensor,
    cond=None,
    u: Tensor | None = None,
    generator: torch.Generator | None = None,
    **kw,
) -> tuple[Tensor, int]:
    """Upper bound (eq. 6) on ``-log2 P(x)`` per dimension for integer ``x`` (B, *data_shape):
    ``(-log p(f(x) + u) + D log(K/2)) / (D ln 2)`` with ``u ~ U(-1/K, 1/K)`` (or the ``u``
    given). Returns ``(bpd, nfe)``, ``bpd`` of shape (B, P) as in ``ode_nll`` (``**kw``);
    ``bpd.mean(1)`` is the per-example estimate."""
    K = model.levels
    f = data_to_signal(x, K, model.schedule.gamma_0.dtype)
    if u is None:
        dev = generator.device if generator is not None else f.device
        u = ((2 * torch.rand(f.shape, generator=generator, device=dev, dtype=f.dtype) - 1) / K).to(f.device)
    nats, nfe = ode_nll(model, f + u, cond=cond, generator=generator, **kw)
    dims = f[0].numel()
    return nats_to_bpd(nats + dims * math.log(K / 2), dims), nfe


@torch.no_grad()
def evaluate_ode(
    model,
    data,
    probes: int = 1,
    exact_trace: bool = False,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    method: str = "dopri5",
    batch_size: int = 256,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Mean ODE NLL bound (eq. 6) in bits/dim over ``data``: one dequantisation draw and one
    solve per example. Returns ``bpd``, ``stderr`` (over examples), ``hutchinson_std_bpd``
    (standard deviation of a one-probe estimate, from the spread over probes; nan for one
    probe or the exact trace) and ``nfe`` (drift evaluations per batch, mean)."""
    if not hasattr(model, "schedule") or not hasattr(model, "eps_hat"):
        raise ValueError("the ODE likelihood is for Gaussian (VDM) models, not blur-plus-noise ones")
    if data.levels != model.levels or data.shape != model.data_shape:
        raise ValueError(
            f"{data.name}: data of shape {data.shape} with {data.levels} levels does not match the model "
            f"({model.data_shape}, {model.levels} levels)"
        )
    conditional = getattr(model, "num_classes", 0) > 0
    if conditional and getattr(data, "y", None) is None:
        raise ValueError(f"{data.name}: a conditional model's -log p(x | y) needs the data's labels")
    model.eval()
    dev = model.schedule.gamma_0.device
    gen = torch.Generator().manual_seed(seed)
    rows, nfes = [], []
    n_batches = math.ceil(len(data) / batch_size)
    for i in progress_bar(range(n_batches), desc="ode eval", enabled=progress):
        x = data.x[i * batch_size:(i + 1) * batch_size].to(dev)
        y = data.y[i * batch_size:(i + 1) * batch_size].to(dev) if conditional else None
        bpd, nfe = ode_bpd(model, x, cond=y, generator=gen, probes=probes, exact_trace=exact_trace,
                           rtol=rtol, atol=atol, method=method)
        rows.append(bpd.double().cpu())
        nfes.append(nfe)
    per = torch.cat(rows)  # (N, P)
    means, n = per.mean(1), per.shape[0]
    return {
        "method": "ode",
        "bpd": means.mean().item(),
        "stderr": (means.std() / math.sqrt(n)).item() if n > 1 else float("nan"),
        "hutchinson_std_bpd": per.var(1).mean().sqrt().item() if per.shape[1] > 1 else float("nan"),
        "nfe": sum(nfes) / len(nfes),
        "n": n,
        "trace": "exact" if exact_trace else f"hutchinson x{probes}",
        "solver": method,
        "rtol": rtol,
        "atol": atol,
        "data": data.name,
        "note": "upper bound on -log2 P(x) per dim: uniform dequantisation of the probability-flow ODE density",
        **({"conditional": "-log p(x | y), y the data's labels"} if conditional else {}),
    }
