"""The registry against the installed libraries' sources: every module class of timm, torchvision
and transformers that calls a dropout function on a ``training`` flag is named by the registry
(by import path or by one of its rules), or reads its rate where no module attribute holds it (a
config) and is then found by the behaviour probe (tested on a real model in test_transformers.py).

The walk is static (``ast``, no model is built): a class qualifies when one of its methods calls a
dropout function (``F.dropout``, ``drop_path``, ``scaled_dot_product_attention``, ..., or a
function of the same package that wraps one, such as torchvision's ``shifted_window_attention``)
with an argument that reads ``self.training``, or passes a rate keyword (``dropout=``,
``dropout_p=``, ...) whose value reads ``self.training`` (Hugging Face's attention interface).
"""

from __future__ import annotations

import ast
import importlib
import pathlib
import re

import pytest

from dropkit.nn import registry
from tests.interop._require import require

DROPOUT_FUNCTIONS = {
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "alpha_dropout",
    "feature_alpha_dropout",
    "drop_path",
    "drop_block_2d",
    "drop_block_fast_2d",
    "stochastic_depth",
    "drop_block2d",
    "drop_block3d",
    "scaled_dot_product_attention",
}
RATE_KEYWORDS = {"dropout", "dropout_p", "p", "attention_dropout", "attn_dropout", "drop_rate"}


def _reads_training(node: ast.AST, owner: str | None = "self") -> bool:
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute) and n.attr == "training":
            if owner is None or (isinstance(n.value, ast.Name) and n.value.id == owner):
                return True
        if owner is None and isinstance(n, ast.Name) and n.id == "training":
            return True
    return False


def _name(call: ast.Call) -> str | None:
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None


def _self_chains(node: ast.AST) -> list[str]:
    """``self.a.b`` chains read in ``node`` (as ``"a.b"``), ``self.training`` left out."""
    out = []
    for n in ast.walk(node):
        if isinstance(n, ast.Attribute):
            parts, v = [n.attr], n.value
            while isinstance(v, ast.Attribute):
                parts.append(v.attr)
                v = v.value
            if isinstance(v, ast.Name) and v.id == "self":
                chain = ".".join(reversed(parts))
                if chain != "training":
                    out.append(chain)
    return out


# A top-level block of a file: a class or function with its decorators (single-line ones).
_BLOCK = re.compile(r"\n(?=(?:@[^\n]*\n)*(?:class |def |async def ))")


def _files(package: str) -> list[tuple[str, list[ast.stmt]]]:
    """``(module, top-level classes and functions that read a training flag)`` of ``package``.

    Only the blocks whose text reads ``training`` and names a drop rate are parsed (the walk of
    transformers' 2,000 files then parses a fraction of them); a file whose blocks do not parse
    alone is parsed whole.
    """
    root = pathlib.Path(importlib.import_module(package).__file__).parent
    out = []
    for path in sorted(root.rglob("*.py")):
        if path.name.startswith(("modular_", "convert_", "configuration_", "tokenization_")):
            continue  # transformers' code-generation templates, converters, configs, tokenizers
        text = path.read_text(encoding="utf-8", errors="replace")
        if "training" not in text:
            continue
        module = ".".join((package, *path.relative_to(root).with_suffix("").parts))
        blocks = [b for b in _BLOCK.split(text) if "training" in b and ("drop" in b or "_p=" in b)]
        try:
            body = [node for b in blocks for node in ast.parse(b).body]
        except SyntaxError:
            body = ast.parse(text).body
        out.append((module.removesuffix(".__init__"), body))
    return out


def dropout_classes(package: str) -> dict[str, list[str]]:
    """``{class import path: the rate expressions of its dropout calls}``."""
    files = _files(package)
    functions = set(DROPOUT_FUNCTIONS)
    for _ in range(2):  # functions wrapping a dropout call on their own training argument
        for _, body in files:
            for fn in body:
                if not isinstance(fn, ast.FunctionDef) or fn.name in functions:
                    continue
                for call in ast.walk(fn):
                    if isinstance(call, ast.Call) and _name(call) in functions:
                        args = [*call.args, *(k.value for k in call.keywords)]
                        if any(_reads_training(a, owner=None) for a in args):
                            functions.add(fn.name)
                            break
    found: dict[str, list[str]] = {}
    for module, body in files:
        for cls in (n for n in body if isinstance(n, ast.ClassDef)):
            rates = []
            for call in ast.walk(cls):
                if not isinstance(call, ast.Call):
                    continue
                args = [*call.args, *(k.value for k in call.keywords)]
                if _name(call) in functions and any(_reads_training(a) for a in args):
                    rate_args = [k.value for k in call.keywords if k.arg in RATE_KEYWORDS]
                    rates += [c for a in rate_args or args for c in _self_chains(a)]
                    rates.append("<call>")
                for k in call.keywords:
                    if k.arg in RATE_KEYWORDS and _reads_training(k.value):
                        rates += _self_chains(k.value) + ["<call>"]
            if rates:
                found[f"{module}.{cls.name}"] = sorted(set(rates) - {"<call>"})
    return found


def _assigns(tree_cls: ast.ClassDef, attr: str) -> bool:
    return any(
        isinstance(n, ast.Attribute)
        and n.attr == attr
        and isinstance(n.value, ast.Name)
        and n.value.id == "self"
        and isinstance(n.ctx, ast.Store)
        for n in ast.walk(tree_cls)
    )


def _registered(path: str) -> bool:
    return path in registry._BY_PATH or any(registry._path(c) == path for c in registry._BY_CLASS)


def _hf_rule_reads(path: str, rates: list[str]) -> bool:
    """The transformers rule (registry._is_hf_gate) reads the rate: a float attribute of
    HF_RATE_ATTRS, or ``self.<child>.p`` of a dropout child of an ``...Attention`` class."""
    cls = path.rsplit(".", 1)[1]
    for r in rates:
        if r in registry.HF_RATE_ATTRS:
            return True
        child, _, attr = r.partition(".")
        if attr == "p" and child in registry._HF_DROPOUT_CHILDREN and cls.endswith("Attention"):
            return True
    return False


def _from_config(rates: list[str]) -> bool:
    return bool(rates) and all(r == "config" or r.startswith("config.") for r in rates)


def test_timm_and_torchvision_classes_are_all_registered():
    require("timm", "timm (and a torchvision matching this torch) cannot be imported")
    require("torchvision", "torchvision cannot be imported against this torch build")
    missing = []
    for package in ("timm", "torchvision"):
        trees = {
            f"{m}.{c.name}": c
            for m, body in _files(package)
            for c in body
            if isinstance(c, ast.ClassDef)
        }
        for path in dropout_classes(package):
            fused = package == "timm" and _assigns(trees[path], "fused_attn")  # the timm rule
            if not (_registered(path) or fused):
                missing.append(path)
    assert not missing, f"dropout on a training flag, unknown to the registry: {missing}"


def test_transformers_classes_are_registered_or_read_their_rate_from_a_config():
    require("transformers", "transformers is not installed")
    found = dropout_classes("transformers")
    assert len(found) > 500  # the walk sees the library (5.25: 690 classes)
    by_config = sorted(p for p, r in found.items() if _from_config(r))
    missing = [p for p, r in found.items() if not _hf_rule_reads(p, r) and not _from_config(r)]
    assert not missing, "dropout on a training flag the registry cannot read: " + ", ".join(
        f"{p} ({found[p]})" for p in missing
    )
    # those reading self.config.<rate> are found by behaviour (test_transformers.py, ProphetNet)
    assert any(p.endswith("ProphetNetEncoder") for p in by_config)


@pytest.mark.parametrize(
    "path",
    [
        "torchvision.models.swin_transformer.ShiftedWindowAttention",
        "timm.models.repghost.RepGhostNet",
        "timm.models.fasternet.FasterNet",
        "timm.models.starnet.StarNet",
    ],
)
def test_the_issues_classes_are_named(path):
    assert _registered(path)
