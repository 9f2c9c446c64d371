"""Sparse attention references: the masked forward against torch's scaled_dot_product_attention
with a boolean mask, both VJPs against central differences and torch autograd (rows that see no
key included), and a torch candidate's backward through ``check(grad=True)``."""

import numpy as np
import pytest

from gradcheck import assert_central_differences, assert_matches_autograd
from seqcheck import equiv
from seqcheck.reference import sparse as ref

torch = pytest.importorskip("torch")


def torch_masked(q, k, v, mask, *, scale=None, return_lse=False):
    group = q.shape[2] // k.shape[2]
    k, v = k.repeat_interleave(group, dim=2), v.repeat_interleave(group, dim=2)
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    s = torch.einsum("bihd,bjhd->bhij", q, k) * scale
    m = torch.as_tensor(np.asarray(mask))[None, None]
    s = s.masked_fill(~m, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    P = torch.where(m, torch.exp(s - torch.where(torch.isfinite(lse), lse, 0.0)[..., None]), 0.0)
    out = torch.einsum("bhij,bjhe->bihe", P, v)
    return (out, lse.transpose(1, 2)) if return_lse else out


def problem(seed, T=7, b=3, group=1):
    """Two kv heads, each read by ``group`` query heads."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((2, T, 2 * group, 3))
    k, v = (rng.standard_normal((2, T, 2, 3)) for _ in range(2))
    mask = rng.random((T, T)) < 0.5
    mask[2] = False  # a row that sees nothing
    return q, k, v, mask, rng


@pytest.mark.parametrize("seed, group", [(0, 1), (1, 1), (2, 1), (0, 2), (1, 3)])
def test_masked_attention_matches_torch_sdpa(seed, group):
    q, k, v, mask, _ = problem(seed, group=group)
    mask[2, 0] = True  # SDPA gives NaN on an empty row; ours gives 0
    expected = torch.nn.functional.scaled_dot_product_attention(
        *(torch.tensor(a).transpose(1, 2) for a in (q, k, v)), attn_mask=torch.tensor(mask),
        enable_gqa=True).transpose(1, 2)
    np.testing.assert_allclose(ref.masked_attention(q, k, v, mask), expected.numpy(), rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("seed, group", [(0, 1), (1, 1), (0, 2)])
@pytest.mark.parametrize("block_size", [1, 3, 4, 8])
def test_both_vjps_match_central_differences_and_autograd(seed, group, block_size):
    """GQA included: a kv head's dK and dV sum over its query heads."""
    q, k, v, mask, rng = problem(seed, group=group)
    block = ref.block_mask_of(mask, block_size)
    c, dl = rng.standard_normal(q.shape[:3] + v.shape[3:]), rng.standard_normal(q.shape[:3])
    dl[:, 2] = 0.0  # the empty row's lse is -inf: no cotangent there (as the checks leave non-finite entries out)
    args = dict(q=q, k=k, v=v, mask=mask)
    dense = ref.masked_attention_vjp(**args, cotangent=c, lse_cotangent=dl)
    tiled = ref.block_sparse_attention_vjp(q, k, v, block, block_size=block_size, token_mask=mask, cotangent=c,
                                           lse_cotangent=dl)
    def forward(**a):  # the empty row's lse (-inf) read as 0: it takes no cotangent
        out, lse = ref.masked_attention(**a, return_lse=True)
        return out, np.where(np.isfinite(lse), lse, 0.0)

    assert_central_differences(forward, args, (c, dl), dense, ("q", "k", "v"), rng)
    def torch_forward(**a):
        out, lse = torch_masked(**a, return_lse=True)
        return out, torch.where(torch.isfinite(lse), lse, 0.0)

    assert_matches_autograd(torch_forward, args, (c, dl), dense, ("q", "k", "v"))
    for name in ("q", "k", "v"):
        np.testing.assert_allclose(tiled[name], dense[name], rtol=1e-12, atol=1e-13)
        assert np.isfinite(tiled[name]).all()


def test_a_torch_masked_attention_backward_passes():
    result = equiv.check(torch_masked, "sparse.attention.masked", backend="torch", grad=True, seed=0, max_examples=40)
    assert result.passed, str(result)
