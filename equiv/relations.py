"""Relations that claims of several families share (a family module imports these, never another
family's module)."""

from __future__ import annotations

import numpy as np


def continuation(impl, args: dict, timed: tuple) -> tuple:
    """Run all T steps at once, and split at every point s (1 <= s < T): the first s steps, then
    the rest from the carried state. Outputs stack the splits along a last axis."""
    T = args[timed[0]].shape[1]
    full_out, full_state = impl(**{**args, "return_state": True})

    def part(sl):
        return {name: value[:, sl] if name in timed and value is not None else value for name, value in args.items()}

    outs, states = [], []
    for s in range(1, T):
        y1, h1 = impl(**{**part(slice(None, s)), "return_state": True})
        y2, h2 = impl(**{**part(slice(s, None)), "initial_state": h1, "return_state": True})
        outs.append(np.concatenate([np.asarray(y1), np.asarray(y2)], axis=1))
        states.append(np.asarray(h2))
    splits = len(outs)
    full_out, full_state = np.asarray(full_out), np.asarray(full_state)
    return ((np.stack(outs, axis=-1), np.stack(states, axis=-1)),
            (np.repeat(full_out[..., None], splits, axis=-1), np.repeat(full_state[..., None], splits, axis=-1)))


def unstacked(bound):
    """The bound of ``continuation``'s outputs (stacked along a last axis of splits): the same per
    position as ``bound`` gives the unsplit outputs."""
    return lambda args, expected: bound(args, tuple(e[..., 0] for e in expected))


def shifted(name: str, constant: float):
    """The relation "unchanged by ``constant`` added to every entry of argument ``name``": the
    form on the shifted argument against the form on the drawn one (a weighted mean such as
    WKV's or AFT's cancels e^constant)."""
    def relation(impl, args: dict) -> tuple:
        return (np.asarray(impl(**{**args, name: args[name] + constant})),), (np.asarray(impl(**args)),)

    return relation
