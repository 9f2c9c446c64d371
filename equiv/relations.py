"""Relations that claims of several families share (a family module imports these, never another
family's module)."""

from __future__ import annotations

import numpy as np

from seqcheck.equiv.registry import without


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


def gradient_continuation(vjp, forward, args: dict, timed: tuple, names: tuple) -> tuple:
    """At every split s (1 <= s < T): the second part's backward from the state ``forward``
    returns on the first part, its initial-state gradient carried as the first part's state
    cotangent, against one backward through the whole sequence. ``timed`` are the arguments
    (cotangent included) split along time; outputs are the gradients ``names``, the timed ones
    joined, stacked over the splits on a last axis (absent ones as empty arrays)."""
    T = args["cotangent"].shape[1]
    full = vjp(**args)

    def part(sl):
        return {n: value[:, sl] if n in timed and value is not None else value for n, value in args.items()}

    def joined(earlier, later, n):
        if n not in earlier:
            return np.zeros(0)
        if n in timed:
            return np.concatenate([np.asarray(earlier[n]), np.asarray(later[n])], axis=1)
        return np.asarray(earlier[n]) + (np.asarray(later[n]) if n != "initial_state" else 0)

    splits = []
    for s in range(1, T):
        first, second = part(slice(None, s)), part(slice(s, None))
        _, carried = forward(**without(first, ("cotangent", "state_cotangent")), return_state=True)
        later = vjp(**{**second, "initial_state": carried})
        earlier = vjp(**{**first, "state_cotangent": later["initial_state"]})
        splits.append([joined(earlier, later, n) for n in names])
    stacked = tuple(np.stack([split[i] for split in splits], axis=-1) for i in range(len(names)))
    whole = tuple(np.repeat(np.asarray(full.get(n, np.zeros(0)))[..., None], len(splits), axis=-1) for n in names)
    return stacked, whole


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
