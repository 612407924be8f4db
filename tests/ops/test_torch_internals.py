"""ops/_torch.py: every torch internal dropkit reads answers its question on this torch.

CI runs the suite on every torch of the version matrix (README, "Supported versions"), so a
release that moves one of these names fails here, by name, before a user meets a wrong result.
"""

from __future__ import annotations

import torch
import torch.autograd.forward_ad as fwAD
from torch._subclasses.fake_tensor import FakeTensorMode

from dropkit.ops import _torch


def test_dispatch_modes():
    assert _torch.dispatch_modes() == 0
    with FakeTensorMode():
        assert _torch.dispatch_modes() > 0


def test_transforms_and_vmap():
    assert _torch.transforms() is None and not _torch.vmap_active()
    seen = {}

    def probe(x, key):
        seen[key] = (_torch.transforms() is not None, _torch.vmap_active())
        return x.sum()

    torch.func.vmap(lambda x: probe(x, "vmap"))(torch.ones(3, 2))
    torch.func.grad(lambda x: probe(x, "grad"))(torch.ones(3))
    assert seen == {"vmap": (True, True), "grad": (True, False)}


def test_outside_transforms():
    def f(x):
        with _torch.outside_transforms():
            inside = _torch.transforms()
        assert inside is None and _torch.transforms() is not None
        return x.sum()

    torch.func.grad(f)(torch.ones(3))


def test_version_counts_in_place_writes():
    t = torch.zeros(4)
    v0 = _torch.version(t)
    t[1:].add_(1)  # through a view
    assert _torch.version(t) > v0
    v1 = _torch.version(t)
    _ = t + 1  # out of place
    assert _torch.version(t) == v1


def test_forward_ad():
    assert not _torch.forward_ad()
    with fwAD.dual_level():
        assert _torch.forward_ad()
    assert not _torch.forward_ad()


def test_constant_result_is_run_not_traced():
    calls = []

    @_torch.constant_result
    def key(obj) -> int:
        calls.append(1)
        return 7

    g = torch.Generator()
    out = torch.compile(lambda x: x + key(g), fullgraph=True, backend="eager")(torch.zeros(2))
    assert torch.equal(out, torch.full((2,), 7.0)) and calls


def test_is_dtensor_without_a_process_group():
    assert not _torch.is_dtensor(torch.ones(2))


def test_a_missing_name_fails_at_import_naming_dropkit():
    import pytest

    with pytest.raises(ImportError, match="dropkit needs torch._C._no_such_thing"):
        _torch._resolve("torch._C._no_such_thing")


def test_onednn_linear_matches_addmm_on_x86():
    import platform

    ops = _torch.onednn_linear()
    if platform.machine() in ("x86_64", "AMD64"):  # the wheels dropkit supports there have oneDNN
        assert ops is not None
    if ops is None:
        return
    linear, linear_add, pack = ops
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(32, 64, generator=g), torch.randn(128, 64, generator=g)
    b, other = torch.randn(128, generator=g), torch.randn(32, 128, generator=g)
    tol = dict(rtol=1e-5, atol=1e-5)  # float32 sums of 64 products, in another order
    torch.testing.assert_close(linear(x, w, b), torch.addmm(b, x, w.t()), **tol)
    torch.testing.assert_close(linear(x, w), x @ w.t(), **tol)
    torch.testing.assert_close(linear_add(x, other, w, b), other + torch.addmm(b, x, w.t()), **tol)
    assert torch.equal(linear_add(x, other, pack(w, 32)), linear_add(x, other, w))
