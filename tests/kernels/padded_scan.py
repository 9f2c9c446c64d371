"""An explicit selective-scan backward that runs over time padded to a multiple of 4 (as a kernel's
chunk loop does) with zero inputs, then drops the padded outputs: with softplus, a padded delta of 0
is a step of log 2, so exp(dt A) != 1 and the padded steps decay the state and leak into dA and
the initial state's gradient (state-spaces/mamba #368)."""

import numpy as np

from seqcheck.reference.mamba import selective_scan_vjp

TIMED = ("u", "delta", "z", "cotangent")


def scan_vjp_over_padded_steps(*, return_state=False, **args):
    T = np.shape(args["u"])[1]
    pad = -T % 4
    padded = dict(args)
    for name in TIMED + ("B", "C"):
        value = args.get(name)
        if value is not None and (name in TIMED or np.ndim(value) > 2):
            padded[name] = np.concatenate([value, np.zeros((value.shape[0], pad) + value.shape[2:], value.dtype)], axis=1)
    grads = selective_scan_vjp(**padded)
    return {name: (g[:, :T] if name in TIMED or (name in ("B", "C") and np.ndim(args[name]) > 2) else g)
            for name, g in grads.items()}
