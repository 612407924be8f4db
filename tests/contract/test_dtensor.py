"""The DTensor contract (issue 21): every op and module on 2 real gloo ranks.

One launch of two ranks runs every case of :mod:`tests.contract._dtensor` (each op and module spec
x Replicate / Shard(0) / Shard(-1) x plain and fast path, with and without ``generator=``); each case
is then one test here. A new op or module joins by its spec: it cannot skip this contract.
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from tests.contract import _dtensor
from tests.contract._specs import FUNCTIONAL, MODULES

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not built")

CASES = _dtensor.cases()


@pytest.fixture(scope="module")
def verdicts():
    from tests.distributed.launch import run

    return run("tests.contract._dtensor:check_all", world_size=2, timeout=600)


@pytest.mark.parametrize("case", CASES, ids=[_dtensor.case_id(c) for c in CASES])
def test_sharding_invariance(verdicts, case):
    assert verdicts[_dtensor.case_id(case)] == "ok"


def test_every_op_and_module_is_a_case():
    names = {(kind, name) for kind, name, *_ in CASES}
    tensor_ops = {str(s) for s in FUNCTIONAL if s.inputs(torch.float32, False)}
    assert {n for k, n in names if k == "op"} == tensor_ops
    assert {n for k, n in names if k == "module"} == {str(s) for s in MODULES}
