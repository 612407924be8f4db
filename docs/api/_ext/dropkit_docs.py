"""The Sphinx extension of dropkit's site: API pages and summaries generated from ``__all__``, and
``Config``'s fields as a table.

* ``.. dropkit-package:: dropkit.functional``: the package's docstring, then each public submodule
  (in name order, the ``:first:`` ones first): its docstring and, one autodoc directive each, the
  names that live there (see :func:`api_homes`: where a class or function is defined, else the
  deepest public module whose ``__all__`` lists it, so a name re-exported from the private
  ``dropkit.ops`` lives where ``dropkit.functional`` lists it). Generated: a module that moves or a
  name that is added needs no edit of the pages.
* ``.. dropkit-summary:: dropkit.functional``: one row per public name (the package's ``__all__``,
  then its public submodules'): a link to where it is documented and its one-line summary. Once
  every page is read, each row's target is checked: a public name that no page documents is a
  warning, so ``sphinx -W`` fails.
* Every pydantic model that autodoc renders (``Config``) gets a table of its fields (type, default,
  allowed values, description), read from ``model_fields``; a field without a description is a
  warning. pydantic's own ``model_config`` (its docstring is pydantic's, in MkDocs syntax) is left
  out, and so is the type's docstring that autodoc gives a constant without a doc comment.
* A docstring's literal block (``::``) that is not Python (the run directory's layout) is shown as
  plain text, not coloured as Python keywords.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

__all__ = [
    "FieldRow",
    "api_homes",
    "escape_rst",
    "field_rows",
    "fields_table_rst",
    "package_rst",
    "public_modules",
    "public_names",
    "setup",
    "summary_rows",
]

# Bounds as annotated_types stores them (Field(ge=0, lt=1) -> Ge(ge=0), Lt(lt=1)).
_BOUNDS = ("ge", "gt", "le", "lt")


# --- Config's fields ---------------------------------------------------------------------------


@dataclass(frozen=True)
class FieldRow:
    """One field of a pydantic model as the reference shows it (plain text, not yet reST)."""

    key: str
    type: str
    default: str
    choices: tuple[str, ...]  # the values it takes, where they are a list
    bounds: str  # "≥ 0", "[0.0, 1.0)", or ""
    description: str


def _type_name(annotation: Any) -> str:
    """``str | None``, ``tuple[int, ...]``, ``str`` for a Literal of strings."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is type(None):
        return "None"
    if origin is typing.Literal:
        return " | ".join(sorted({type(a).__name__ for a in args}))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"tuple[{_type_name(args[0])}, ...]"
    if origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    return getattr(annotation, "__name__", str(annotation).replace("typing.", ""))


def _choices(field: Any) -> tuple[str, ...]:
    """A Literal's values (also inside ``X | None``), or the lab's ``choices`` string "a|b|c"."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if "choices" in extra:
        choices = extra["choices"]
        return tuple(choices.split("|") if isinstance(choices, str) else map(str, choices))
    arms = typing.get_args(field.annotation)
    if typing.get_origin(field.annotation) is typing.Literal or not arms:
        arms = (field.annotation,)
    return tuple(
        str(value)
        for arm in arms
        if typing.get_origin(arm) is typing.Literal
        for value in typing.get_args(arm)
    )


def _bounds(field: Any) -> str:
    """``≥ 0``, ``> 0``, ``≤ 1``, or an interval ``[0.0, 1.0)``; "" when unbounded. A range that
    pydantic does not hold (each entry of a tuple) is the lab's ``bounds`` string, "each >= 1"."""
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    if isinstance(extra.get("bounds"), str):
        return extra["bounds"]
    found = {
        attr: getattr(c, attr)
        for c in field.metadata
        for attr in _BOUNDS
        if getattr(c, attr, None) is not None
    }
    lower = ("[", found["ge"]) if "ge" in found else ("(", found["gt"]) if "gt" in found else None
    upper = ("]", found["le"]) if "le" in found else (")", found["lt"]) if "lt" in found else None
    if lower and upper:
        return f"{lower[0]}{lower[1]}, {upper[1]}{upper[0]}"
    if lower:
        return f"{'≥' if lower[0] == '[' else '>'} {lower[1]}"
    if upper:
        return f"{'≤' if upper[0] == ']' else '<'} {upper[1]}"
    return ""


def _default(field: Any) -> str:
    if field.is_required():
        return "(required)"
    value = field.get_default(call_default_factory=True)
    return value if isinstance(value, str) else repr(value)


def field_rows(model: type) -> list[FieldRow]:
    """The rows of ``model``'s field table, in declaration order, from ``model.model_fields``."""
    rows = []
    for key, field in model.model_fields.items():
        rows.append(
            FieldRow(
                key=key,
                type=_type_name(field.annotation),
                default=_default(field),
                choices=_choices(field),
                bounds=_bounds(field),
                description=" ".join((field.description or "").split()),
            )
        )
    return rows


def escape_rst(text: str) -> str:
    """Plain text (a field's description, written for ``--help``) as reST that reads the same."""
    return re.sub(r"([\\`*_|<>\[\]])", r"\\\1", text)


def _literal(text: str) -> str:
    # An inline literal cannot hold a backquote next to its ends or be empty; none of ours do.
    return f"``{text}``" if text.strip() else ""


def fields_table_rst(model: type) -> list[str]:
    """``model``'s fields as a reST ``list-table``: key, type, default, allowed values, description."""
    lines = [
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 16 14 12 22 36",
        "   :class: dropkit-config-fields",
        "",
        "   * - key",
        "     - type",
        "     - default",
        "     - allowed",
        "     - description",
    ]
    for row in field_rows(model):
        allowed = " | ".join(_literal(choice) for choice in row.choices)
        if row.bounds:
            allowed = f"{allowed}; {row.bounds}" if allowed else row.bounds
        lines += [
            f"   * - {_literal(row.key)}",
            f"     - {_literal(row.type)}",
            f"     - {_literal(row.default)}",
            f"     - {allowed}",
            f"     - {escape_rst(row.description)}",
        ]
    return lines


# --- public names and API pages ----------------------------------------------------------------


def public_modules(package: str) -> list[str]:
    """``package`` and its public submodules (no leading ``_``), imported, in name order. A
    top-level package (``dropkit``) stands for its own ``__all__`` only: its subpackages have pages
    of their own."""
    module = importlib.import_module(package)
    names = [package]
    if "." in package:
        for info in pkgutil.iter_modules(getattr(module, "__path__", [])):
            if not info.name.startswith("_"):
                names.append(f"{package}.{info.name}")
                importlib.import_module(names[-1])
    return names


def _all(module: str) -> list[str]:
    return list(getattr(importlib.import_module(module), "__all__", []))


def _key(name: str, obj: Any) -> Any:
    # Classes, functions and modules are themselves; a constant is its value under its name
    # (two modules may export the same small int or string under different names).
    if inspect.isclass(obj) or inspect.isroutine(obj) or inspect.ismodule(obj):
        return id(obj)
    return (id(obj), name)


def api_homes(packages: list[str]) -> dict[Any, str]:
    """Where the reference documents each public object of ``packages`` (and of the top-level
    package): ``"module.name"``, or a module's own name.

    The home of a class or function is the module that defines it, when that module is one of the
    documented ones; otherwise (a constant; a name re-exported from a private module, such as
    ``dropkit.ops`` behind ``dropkit.functional``) the deepest documented module whose ``__all__``
    lists it, so that a constant of ``dropkit.data.uci`` lives there, not on ``dropkit.data``.
    """
    modules = [m for p in packages for m in public_modules(p)]
    roots = sorted({p.split(".")[0] for p in packages})
    modules += [r for r in roots if r not in modules]
    homes: dict[Any, str] = {}
    for module in modules:
        for name in _all(module):
            obj = getattr(importlib.import_module(module), name)
            if inspect.ismodule(obj):
                homes[_key(name, obj)] = obj.__name__
            elif (inspect.isclass(obj) or inspect.isroutine(obj)) and obj.__module__ == module:
                homes.setdefault(_key(name, obj), f"{module}.{name}")
    for module in sorted(modules, key=lambda m: -m.count(".")):
        for name in _all(module):
            obj = getattr(importlib.import_module(module), name)
            homes.setdefault(_key(name, obj), f"{module}.{name}")
    return homes


def public_names(package: str) -> Iterator[tuple[str, Any]]:
    """``(name, obj)`` for every name of the ``__all__`` of ``package``, then of its public
    submodules (see :func:`public_modules`), each object once."""
    seen: set[Any] = set()
    for module in public_modules(package):
        for name in _all(module):
            obj = getattr(importlib.import_module(module), name)
            if _key(name, obj) not in seen:
                seen.add(_key(name, obj))
                yield name, obj


def _directive(obj: Any) -> str:
    if inspect.isclass(obj):
        return "autoexception" if issubclass(obj, BaseException) else "autoclass"
    return "autofunction" if inspect.isroutine(obj) else "autodata"


def package_rst(package: str, homes: dict[Any, str], first: list[str] | None = None) -> list[str]:
    """The reST of one API page: each module of :func:`public_modules`, its docstring, then the names
    whose home (:func:`api_homes`) it is, in source order; ``first`` (submodule names) come first.

    One autodoc directive per name (``autoclass``, ``autofunction``, ``autodata``...), so that the
    page holds exactly the public names, constants included, and a class its documented members.
    """
    from sphinx.pycode import ModuleAnalyzer

    modules = public_modules(package)
    order = [package] + [f"{package}.{m}" for m in first or [] if f"{package}.{m}" in modules]
    order += [m for m in modules if m not in order]
    lines: list[str] = []
    for module in order:
        lines += [f".. automodule:: {module}", "   :no-members:", ""]
        mod = importlib.import_module(module)
        owned = [
            n
            for n in _all(module)
            if not inspect.ismodule(getattr(mod, n))
            and homes.get(_key(n, getattr(mod, n))) == f"{module}.{n}"
        ]
        try:
            tags = ModuleAnalyzer.for_module(module).tagorder
        except Exception:  # no source (a compiled module): __all__ order
            tags = {}
        for name in sorted(owned, key=lambda n: tags.get(n, len(tags) + owned.index(n))):
            lines += [f".. {_directive(getattr(mod, name))}:: {module}.{name}", ""]
    return lines


def summary_rows(package: str, homes: dict[Any, str]) -> Iterator[tuple[str, str, Any]]:
    """``(role, target, obj)`` for each public name of ``package``: the cross-reference role
    (``mod`` or ``obj``) and the documented name it points to."""
    for name, obj in public_names(package):
        target = homes.get(_key(name, obj), f"{package}.{name}")
        yield ("mod" if inspect.ismodule(obj) else "obj"), target, obj


def _is_type_doc(obj: Any, lines: list[str]) -> bool:
    """Whether ``lines`` are the docstring of ``obj``'s type (autodoc's text for a constant)."""
    type_doc = inspect.getdoc(type(obj)) or ""
    return bool(type_doc) and lines[0].strip() == type_doc.splitlines()[0].strip()


def _summary(obj: Any, document: Any) -> str:
    from sphinx.ext.autosummary import extract_summary

    if not (inspect.ismodule(obj) or inspect.isclass(obj) or inspect.isroutine(obj)):
        text = repr(obj)
        return f"constant: {_literal(text if len(text) <= 60 else text[:57] + '...')}"
    doc = inspect.getdoc(obj) or ""
    return extract_summary(doc.splitlines(), document.settings) if doc.strip() else ""


# --- Sphinx glue ---------------------------------------------------------------------------------


def setup(app: Any) -> dict[str, Any]:
    from docutils import nodes
    from docutils.parsers.rst import directives
    from docutils.statemachine import StringList
    from sphinx.ext.autodoc.mock import mock
    from sphinx.util import logging
    from sphinx.util.docutils import SphinxDirective

    logger = logging.getLogger(__name__)
    cache: dict[tuple[str, ...], dict[Any, str]] = {}

    def homes(config: Any) -> dict[Any, str]:
        packages = tuple(config.dropkit_api_packages)
        if packages not in cache:
            with mock(config.autodoc_mock_imports):  # as autodoc imports them
                cache[packages] = api_homes(list(packages))
        return cache[packages]

    class _RstDirective(SphinxDirective):
        required_arguments = 1

        def rst(self) -> list[str]:
            raise NotImplementedError

        def run(self) -> list[Any]:
            node = nodes.container()
            with mock(self.config.autodoc_mock_imports):
                lines = self.rst()
            self.state.nested_parse(
                StringList(lines, source=f"<{self.name} {self.arguments[0]}>"),
                self.content_offset,
                node,
                match_titles=True,
            )
            return node.children

    class PackageDirective(_RstDirective):
        option_spec = {"first": directives.unchanged}

        def rst(self) -> list[str]:
            first = (self.options.get("first") or "").split()
            return package_rst(self.arguments[0], homes(self.config), first)

    class SummaryDirective(_RstDirective):
        def rst(self) -> list[str]:
            lines = [
                ".. list-table::",
                "   :widths: 30 70",
                "   :class: dropkit-summary",
                "",
            ]
            targets = self.env.__dict__.setdefault("dropkit_summary_targets", {})
            for role, target, obj in summary_rows(self.arguments[0], homes(self.config)):
                targets.setdefault(self.env.docname, []).append((role, target))
                lines += [
                    f"   * - :py:{role}:`~{target}`",
                    f"     - {_summary(obj, self.state.document) or '(no docstring)'}",
                ]
            return lines

    def is_pydantic_model(obj: Any) -> bool:
        return (
            inspect.isclass(obj) and hasattr(obj, "model_fields") and hasattr(obj, "model_config")
        )

    def process_docstring(
        app: Any, what: str, name: str, obj: Any, options: Any, lines: list[str]
    ) -> None:
        if what in ("data", "attribute") and lines and _is_type_doc(obj, lines):
            lines[:] = []  # a constant without a doc comment: not dict's or tuple's docstring
            return
        if what != "class" or not is_pydantic_model(obj):
            return
        for row in field_rows(obj):
            if not row.description:
                logger.warning("%s: field %r has no description", name, row.key)
        lines += ["", f".. rubric:: Fields ({len(obj.model_fields)})", ""]
        lines += fields_table_rst(obj)

    def skip_pydantic(app: Any, what: str, name: str, obj: Any, skip: bool, options: Any) -> Any:
        if what == "class" and name in ("model_config", "model_fields", "model_computed_fields"):
            return True
        return None

    def plain_layouts(app: Any, doctree: Any) -> None:
        for block in doctree.findall(nodes.literal_block):
            text = block.astext()
            if block.get("language", "default") != "default" or text.lstrip().startswith(">>>"):
                continue
            try:
                compile(text, "<literal block>", "exec")
            except SyntaxError:
                block["language"] = "none"

    def purge(app: Any, env: Any, docname: str) -> None:
        env.__dict__.get("dropkit_summary_targets", {}).pop(docname, None)

    def merge(app: Any, env: Any, docnames: Any, other: Any) -> None:
        env.__dict__.setdefault("dropkit_summary_targets", {}).update(
            other.__dict__.get("dropkit_summary_targets", {})
        )

    def check(app: Any, env: Any) -> None:
        py = env.get_domain("py")
        for docname, targets in env.__dict__.get("dropkit_summary_targets", {}).items():
            for role, target in targets:
                known = py.modules if role == "mod" else py.objects
                if target not in known:
                    logger.warning(
                        "%s: public name %s is documented on no page of the site",
                        docname,
                        target,
                        location=docname,
                    )

    app.add_config_value("dropkit_api_packages", [], "env")
    app.add_directive("dropkit-package", PackageDirective)
    app.add_directive("dropkit-summary", SummaryDirective)
    app.connect("autodoc-process-docstring", process_docstring)
    app.connect("autodoc-skip-member", skip_pydantic)
    app.connect("doctree-read", plain_layouts)
    app.connect("env-purge-doc", purge)
    app.connect("env-merge-info", merge)
    app.connect("env-check-consistency", check)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
