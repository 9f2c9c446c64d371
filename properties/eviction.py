"""Strategies for KV-cache eviction: decoding runs under every policy, one attention row over a
cache, one TOVA selection, key re-rotation.

Every keyword takes a strategy or a fixed value (``fixed_or``). Sizes stay tiny (B 1..2, T 1..12,
a few heads with GQA, D <= 4) so that a claim runs a hundred decoding runs in a second.
``decode_inputs``' ``size`` option (``arrays.SIZES``) is "small" unless given: decoding is a
Python loop per token (about 0.1 s a run at T = 257), so large runs are opt-in: "large" draws T
15..257 around multiples of 16 and D 16..128, "default" mixes such runs among small ones.

Data styles (``eviction_data``): the random styles of ``arrays.STYLES`` (normal, uniform,
integers with exact ties, outliers) and two structured ones: ``heavy_hitters`` (a few tokens
whose keys align with a direction every query shares, so they draw attention from every later
query, as H2O's heavy hitters) and ``sinks`` (the first tokens' keys aligned with it, the
attention sinks of StreamingLLM); ``heavy_sinks`` has both. The report's quality sweeps use the
same generator at T = 1024.
"""

from __future__ import annotations

import inspect

import numpy as np
from hypothesis import strategies as st

from seqcheck.properties.arrays import STYLES, Sized, fixed_or, generators, lengths, sized, tiers, values
from seqcheck.reference.eviction import POLICIES

POLICY_NAMES = tuple(POLICIES)
DATA_STYLES = STYLES + ("heavy_hitters", "sinks", "heavy_sinks")
ROPE_MODES = (None, "post", "pre_shift")


def eviction_data(rng: np.random.Generator, style: str, batch: int, length: int, heads: int, kv_heads: int,
                  head_dim: int, value_dim: int, *, sinks: int = 2, heavy_fraction: float = 0.1,
                  boost: float = 4.0) -> dict:
    """q (B, T, H, D), k (B, T, Hkv, D), v (B, T, Hkv, Dv) in ``style`` (module docstring).

    Structured styles start from N(0, 1) and add a shared unit direction u (one per kv head):
    every query gets 2 u, a heavy hitter's or a sink's key gets (boost / 2) sqrt(D) u (twice
    that for sinks), so its score (scale 1/sqrt(D)) rises by about ``boost`` (2 ``boost``).
    Heavy hitters: ``heavy_fraction`` of the tokens after the sinks (at least one), at random.
    """
    if style in STYLES:
        return {"q": values(rng, style, (batch, length, heads, head_dim)),
                "k": values(rng, style, (batch, length, kv_heads, head_dim)),
                "v": values(rng, style, (batch, length, kv_heads, value_dim))}
    if style not in DATA_STYLES:
        raise ValueError(f"style: expected one of {DATA_STYLES}, got {style!r}")
    q = rng.standard_normal((batch, length, heads, head_dim))
    k = rng.standard_normal((batch, length, kv_heads, head_dim))
    v = rng.standard_normal((batch, length, kv_heads, value_dim))
    u = rng.standard_normal((kv_heads, head_dim))
    u /= np.linalg.norm(u, axis=-1, keepdims=True)
    group = heads // kv_heads
    q += 2.0 * np.repeat(u, group, axis=0)
    lift = 0.5 * boost * np.sqrt(head_dim) * u
    first = min(sinks, length) if style in ("sinks", "heavy_sinks") else 0
    if first:
        k[:, :first] += 2 * lift
    if style in ("heavy_hitters", "heavy_sinks") and length > first:
        count = max(1, int(round(heavy_fraction * (length - first))))
        for b in range(batch):
            chosen = first + rng.choice(length - first, size=min(count, length - first), replace=False)
            k[b, chosen] += lift
    return {"q": q, "k": k, "v": v}


@st.composite
def policy_options(draw, policy: str, budget: int, *, sinks=None, heavy=None, recent=None, history=None, drop=None,
                   threshold=None, window=None, kernel_size=None, pooling=None, heads=None) -> dict:
    """Parameters of ``policy`` valid for ``budget`` (each option a strategy or a fixed value)."""
    pick = lambda given, default: draw(fixed_or(default if given is None else given))  # noqa: E731
    if policy == "streaming_llm":
        return {"sinks": pick(sinks, st.integers(0, budget))}
    if policy == "h2o":
        return {"heavy": pick(heavy, st.integers(0, budget))}
    if policy == "scissorhands":
        kept_recent = pick(recent, st.integers(0, budget))
        return {"recent": kept_recent, "history": pick(history, st.integers(1, 6)),
                "drop": pick(drop, st.integers(1, budget + 1 - max(kept_recent, 1))),
                "threshold": pick(threshold, st.sampled_from(["uniform", "position"]))}
    if policy == "snapkv":
        return {"window": pick(window, st.integers(1, budget - 1)),
                "kernel_size": pick(kernel_size, st.sampled_from([1, 3, 5])),
                "pooling": pick(pooling, st.sampled_from(["avgpool", "maxpool"])),
                "heads": pick(heads, st.sampled_from(["query", "kv"]))}
    if policy not in POLICIES:
        raise ValueError(f"policy: expected one of {POLICY_NAMES}, got {policy!r}")
    return {}


@st.composite
def decode_inputs(
    draw,
    *,
    policy=st.sampled_from(POLICY_NAMES),
    named=True,
    size="small",
    batch=st.integers(1, 2),
    length=lengths(12),
    kv_heads=st.integers(1, 2),
    group=st.integers(1, 2),
    head_dim=Sized(range(1, 3), (16, 32, 64), "1..2 (large: 16, 32 or 64), doubled with RoPE"),
    value_dim=st.integers(1, 3),
    budget=None,
    prefill_len=None,
    rope=st.sampled_from(ROPE_MODES),
    rope_base=st.sampled_from([10000.0, 100.0]),
    position_offset=st.sampled_from([0, 3, 1000]),
    scale=st.none() | st.sampled_from([0.5, 2.0]),
    style=st.sampled_from(DATA_STYLES),
    sharpness=st.sampled_from([1.0, 4.0]),
    sinks=None,
    heavy=None,
    recent=None,
    history=None,
    drop=None,
    threshold=None,
    window=None,
    kernel_size=None,
    pooling=None,
    heads=None,
):
    """Keyword arguments of ``simulate_decoding`` with the policy as a name plus its parameters.

    q (B, T, H, D), k (B, T, Hkv, D), v (B, T, Hkv, Dv), H = Hkv * group; D is 1 or 2 without
    RoPE and 2 * head_dim with it. ``budget`` defaults to 1..T+1 (SnapKV: at least 2, its window
    must fit), ``prefill_len`` to 0..T. ``named``: include ``policy`` (the claims' ``decode``
    takes it; the forms ``eviction.<policy>.decode`` fix it). ``sinks`` .. ``heads``: the
    policy's parameters (``policy_options``; those of other policies are ignored). ``sharpness``
    multiplies q (sharper attention rows).

    Options:
        policy: the eviction policy's name (POLICY_NAMES).
        named: whether the arguments include ``policy``.
        size: size tier of the length and head dim: "small", "default" or "large" (small unless
            given: a decoding run is a Python loop per token).
        batch: batch size B.
        length: tokens decoded T.
        kv_heads: key/value heads Hkv.
        group: query heads per kv head (H = Hkv * group).
        head_dim: key dimension D without RoPE, D / 2 with it.
        value_dim: value dimension Dv.
        budget: cache budget in tokens (None: 1..T+1; SnapKV at least 2).
        prefill_len: tokens prefilled before decoding (None: 0..T).
        rope: None, "post" (keys cached rotated) or "pre_shift" (rotated at their cache slot).
        rope_base: RoPE base.
        position_offset: position of the first token.
        scale: score scale (None: 1/sqrt(D)).
        style: data style (DATA_STYLES): random styles, heavy hitters, attention sinks.
        sharpness: factor on q (sharper attention rows).
        sinks: StreamingLLM's sink tokens (None: 0..budget).
        heavy: H2O's heavy-hitter slots (None: 0..budget).
        recent: Scissorhands' recent tokens kept (None: 0..budget).
        history: Scissorhands' history window (None: 1..6).
        drop: Scissorhands' tokens dropped per compression (None: drawn to fit the budget).
        threshold: Scissorhands' importance threshold, "uniform" or "position".
        window: SnapKV's observation window (None: 1..budget-1).
        kernel_size: SnapKV's pooling kernel, 1, 3 or 5.
        pooling: SnapKV's pooling, "avgpool" or "maxpool".
        heads: SnapKV's score heads, "query" or "kv".
    """
    name = draw(fixed_or(policy))
    tier = draw(tiers(size))
    B, T, Hkv = draw(fixed_or(batch)), draw(sized(length, tier)), draw(fixed_or(kv_heads))
    H = Hkv * draw(fixed_or(group))
    mode = draw(fixed_or(rope))
    D = draw(sized(head_dim, tier)) * (2 if mode is not None else 1)
    K = draw(fixed_or(st.integers(1, T + 1) if budget is None else budget))
    K = max(K, 2) if name == "snapkv" else K  # SnapKV's window (>= 1) must fit inside the budget
    P = draw(fixed_or(st.integers(0, T) if prefill_len is None else prefill_len))
    data = eviction_data(draw(generators()), draw(fixed_or(style)), B, T, H, Hkv, D, draw(fixed_or(value_dim)))
    args = {"q": data["q"] * draw(fixed_or(sharpness)), "k": data["k"], "v": data["v"], "budget": K,
            "prefill_len": P, "rope": mode, "rope_base": draw(fixed_or(rope_base)),
            "position_offset": draw(fixed_or(position_offset)), "scale": draw(fixed_or(scale))}
    if named:
        args["policy"] = name
    args.update(draw(policy_options(name, K, sinks=sinks, heavy=heavy, recent=recent, history=history, drop=drop,
                                    threshold=threshold, window=window, kernel_size=kernel_size, pooling=pooling,
                                    heads=heads)))
    return args


@st.composite
def layered_inputs(draw, *, layers=st.integers(1, 2), **options):
    """``decode_inputs`` with a leading layer axis: q (L, B, T, H, D), k and v (L, B, T, Hkv, .)."""
    L = draw(fixed_or(layers))
    args = draw(decode_inputs(**options))
    rng = draw(generators())
    for name in ("q", "k", "v"):
        others = [args[name]] + [rng.permutation(args[name].ravel()).reshape(args[name].shape) for _ in range(L - 1)]
        args[name] = np.stack(others)
    return args


@st.composite
def remove_one_inputs(draw, *, batch=st.integers(1, 2), q_len=st.integers(1, 4), cache=st.integers(2, 10),
                      kv_heads=st.integers(1, 2), group=st.integers(1, 2), head_dim=st.integers(1, 4),
                      value_dim=st.integers(1, 3), style=st.sampled_from(("normal", "uniform", "integers")),
                      sharpness=st.sampled_from([1.0, 4.0]), scale=st.none() | st.sampled_from([0.5, 2.0])):
    """Queries (B, Tq, H, D) over one cache k (B, n, Hkv, D), v (B, n, Hkv, Dv); ``keep`` (B, n)
    bool with at least two kept keys per batch element; ``j`` (B,) one kept key per element to
    remove. Styles without outliers keep scores small enough that p_j / (1 - p_j) stays finite."""
    B, Tq, n, Hkv = (draw(fixed_or(s)) for s in (batch, q_len, cache, kv_heads))
    H, D, Dv = Hkv * draw(fixed_or(group)), draw(fixed_or(head_dim)), draw(fixed_or(value_dim))
    rng = draw(generators())
    chosen = draw(fixed_or(style))
    keep = np.zeros((B, n), dtype=bool)
    j = np.zeros(B, dtype=np.int64)
    for b in range(B):
        size = int(rng.integers(2, n + 1))
        kept = rng.choice(n, size=size, replace=False)
        keep[b, kept] = True
        j[b] = kept[0]
    return {"q": values(rng, chosen, (B, Tq, H, D)) * draw(fixed_or(sharpness)),
            "k": values(rng, chosen, (B, n, Hkv, D)), "v": values(rng, chosen, (B, n, Hkv, Dv)),
            "keep": keep, "j": j, "scale": draw(fixed_or(scale))}


@st.composite
def selection_inputs(draw, *, batch=st.integers(1, 2), heads=st.integers(1, 4), cache=st.integers(1, 10),
                     budget=None, style=st.sampled_from(STYLES), sharpness=st.sampled_from([1.0, 4.0])):
    """One TOVA selection from a slot-ordered cache: ``probs`` (B, H, n) attention rows (softmax of
    scores in ``style``), ``positions`` (B, n) distinct token indices in arbitrary slot order,
    ``budget`` 1..n; and the permutations ``head_perm`` (H,) and ``slot_perm`` (n,) to apply."""
    B, H, n = draw(fixed_or(batch)), draw(fixed_or(heads)), draw(fixed_or(cache))
    rng = draw(generators())
    scores = values(rng, draw(fixed_or(style)), (B, H, n)) * draw(fixed_or(sharpness))
    probs = np.exp(scores - scores.max(axis=-1, keepdims=True))
    probs /= probs.sum(axis=-1, keepdims=True)
    positions = np.stack([rng.choice(2 * n, size=n, replace=False) for _ in range(B)]).astype(np.int64)
    return {"probs": probs, "positions": positions,
            "budget": draw(fixed_or(st.integers(1, n) if budget is None else budget)),
            "head_perm": rng.permutation(H).astype(np.int64), "slot_perm": rng.permutation(n).astype(np.int64)}


@st.composite
def rerotation_inputs(draw, *, batch=st.integers(1, 2), length=st.integers(1, 6), heads=st.integers(1, 2),
                      half_dim=st.integers(1, 8), max_position=st.sampled_from([16, 4096])):
    """Keys k (B, T, H, D) rotated to p (T,) and re-rotated to i (T,) (either order: i < p moves a
    key to an earlier slot, as StreamingLLM's position shift does after an eviction); RoPE base."""
    B, T, H, D = (draw(fixed_or(s)) for s in (batch, length, heads, half_dim))
    top = draw(fixed_or(max_position))
    positions = st.lists(st.integers(0, top), min_size=T, max_size=T).map(lambda p: np.array(p, dtype=np.int64))
    return {"k": draw(random_arrays_of((B, T, H, 2 * D))), "p": draw(positions), "i": draw(positions),
            "base": draw(st.sampled_from([10000.0, 500000.0, 100.0]))}


def random_arrays_of(shape):
    """One float64 array of ``shape`` from a drawn seed and value style."""
    return st.tuples(generators(), st.sampled_from(STYLES)).map(lambda pair: values(pair[0], pair[1], shape))


POLICY_PARAMETERS = {"streaming_llm": ("sinks",), "h2o": ("heavy",),
                     "scissorhands": ("recent", "history", "drop", "threshold"),
                     "snapkv": ("window", "kernel_size", "pooling", "heads")}
"""The parameters ``policy_options`` draws for each policy (the others take none)."""


def form_inputs(policy: str):
    """The strategy of form ``eviction.<policy>.decode``: ``decode_inputs`` without the name, its
    signature without ``policy``, ``named`` and the other policies' parameters (so ``inputs_for``
    lists and accepts only the options that do something)."""
    def strategy(**options):
        return decode_inputs(policy=policy, named=False, **options)

    own = POLICY_PARAMETERS.get(policy, ())
    others = {name for names in POLICY_PARAMETERS.values() for name in names} - set(own)
    signature = inspect.signature(decode_inputs)
    strategy.__name__ = strategy.__qualname__ = f"decode_inputs_{policy}"
    strategy.__doc__ = decode_inputs.__doc__
    strategy.__signature__ = signature.replace(parameters=[
        p for name, p in signature.parameters.items() if name not in {"draw", "policy", "named"} | others])
    return strategy
