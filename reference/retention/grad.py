"""The exact float64 gradient of multi-scale retention as torchscale decodes it.

``msr_recurrent``'s row n is y_n = N(x_n / sqrt(s_n)): x the retention output on the rotated,
scaled qr = R(q), kr = R(k) K^-1/2 (gamma_h = 1 - 2^(-5-h)), s_n = gamma s_{n-1} + 1 (s_0 = 1)
the running scale, N the per-head RMSNorm z -> z r, r = (mean(z^2) + eps)^-1/2. Backward, with
dy the cotangent, per row:

    dz = r (dy - y (dy . y) / V),   dx = dz / sqrt(s_n),

then retention's backward (GLA's, g = log gamma, scale 1) gives dqr, dkr, dv, and the rotation
is orthogonal: dq = R^T(dqr), dk = R^T(dkr) K^-1/2, R^T the rotation by -theta. Verified in the
tests against central differences and torch autograd of the recurrence.
"""

import numpy as np

from .._checks import as_real, check_shape, finite_real
from ..gla import gla_vjp
from .multiscale import _prepare, msr_rotate, msr_scales
from .retention import retention_recurrent


def msr_vjp(q, k, v, *, cotangent, eps=1e-6):
    """The gradients of <msr_recurrent(q, k, v, eps=eps), cotangent> (module docstring):
    {"q", "k" (B, T, H, K), "v" (B, T, H, V)}."""
    eps = finite_real("eps", eps, ">= 0")
    (qr, kr, v), gamma = _prepare(q, k, v)
    qr, kr, v = (np.swapaxes(a, 1, 2) for a in (qr, kr, v))  # (B, T, H, .)
    dy = as_real("cotangent", cotangent)
    check_shape("cotangent", dy, v.shape, "(B, T, H, V)", match="q and v")
    B, T, H, K = qr.shape
    root = np.sqrt(msr_scales(H, T))[None, :, :, None]  # (1, T, H, 1)
    z = retention_recurrent(qr, kr, v, gamma) / root
    with np.errstate(invalid="ignore", divide="ignore"):  # a row of zeros with eps = 0: NaN, as the forward
        r = 1 / np.sqrt(np.mean(z * z, axis=-1, keepdims=True) + eps)
        y = z * r
        dz = r * (dy - y * np.mean(dy * y, axis=-1, keepdims=True))
    g = np.broadcast_to(np.log(gamma), (B, T, H))
    grads = gla_vjp(qr, kr, v, g, cotangent=dz / root, scale=1.0)
    positions = -np.arange(T)
    return {"q": msr_rotate(grads["q"], positions), "k": msr_rotate(grads["k"], positions) * K ** -0.5,
            "v": grads["v"]}
