"""The site's extension (docs/api/_ext/dropkit_docs.py): ``Config``'s field table, and the pages
and summaries that hold every public name.

The build itself (``sphinx -W``) is the README's test command; these tests check what the build
cannot: that the table says what the pydantic model says, for any model, and that every public
package of dropkit has a page.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
import runpy
import sys
import typing
from pathlib import Path

import pytest

pytest.importorskip("sphinx", reason="the site is built with the docs extra")
pydantic = pytest.importorskip("pydantic", reason="Config needs the lab extra")

import dropkit  # noqa: E402
from dropkit.lab.config import Config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
API = ROOT / "docs" / "api"


def _load_extension():
    spec = importlib.util.spec_from_file_location("dropkit_docs", API / "_ext" / "dropkit_docs.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


ext = _load_extension()


def _rows(model) -> dict:
    return {row.key: row for row in ext.field_rows(model)}


class TestConfigTable:
    def test_every_field_once_in_declaration_order(self):
        assert [row.key for row in ext.field_rows(Config)] == list(Config.model_fields)

    def test_types_defaults_choices_and_bounds(self):
        rows = _rows(Config)
        assert (rows["activation"].type, rows["activation"].default) == ("str", "relu")
        assert rows["activation"].choices == typing.get_args(
            Config.model_fields["activation"].annotation
        )
        assert rows["dataset"].choices[-1] == "pkg.module:load"  # the lab's "choices" string
        assert (rows["data_dir"].type, rows["data_dir"].default) == ("str | None", "None")
        assert (rows["widths"].type, rows["widths"].default) == ("tuple[int, ...]", "(100, 100)")
        assert rows["p_input"].bounds == "[0.0, 1.0)"
        assert rows["lr"].bounds == "> 0.0"
        assert rows["seed"].bounds == "≥ 0"
        assert rows["name"].bounds == "" and rows["name"].choices == ()

    def test_descriptions_are_the_models(self):
        # Whatever the model says (the CLI's --help reads the same), whitespace collapsed.
        for key, field in Config.model_fields.items():
            assert _rows(Config)[key].description == " ".join((field.description or "").split())

    def test_any_model(self):
        class Model(pydantic.BaseModel):
            mode: typing.Literal["a", "b"] | None = pydantic.Field(None, description="x  *y*")
            rate: float = pydantic.Field(0.5, gt=0.0, le=1.0)
            sizes: list[int] = pydantic.Field(
                default_factory=lambda: [1, 2], json_schema_extra={"bounds": "each >= 1"}
            )
            needed: int

        rows = _rows(Model)
        assert rows["mode"] == ext.FieldRow("mode", "str | None", "None", ("a", "b"), "", "x *y*")
        assert (rows["rate"].bounds, rows["rate"].description) == ("(0.0, 1.0]", "")
        assert (rows["sizes"].type, rows["sizes"].default) == ("list[int]", "[1, 2]")
        assert rows["sizes"].bounds == "each >= 1"  # the lab's json_schema_extra convention
        assert rows["needed"].default == "(required)"

    def test_the_table_is_valid_rest_that_reads_as_the_descriptions(self):
        from docutils.core import publish_doctree

        class Model(pydantic.BaseModel):
            gamma: float = pydantic.Field(
                1.0, description="rate * (1 - exp(-gamma * t)); `x` |sub| a_ <tag> [1]_"
            )

        for model in (Config, Model):
            # halt_level 2: a reST warning (an unclosed `*`, a stray `|`) raises.
            tree = publish_doctree(
                "\n".join(ext.fields_table_rst(model)),
                settings_overrides={"halt_level": 2, "report_level": 2},
            )
            text = tree.astext()
            for row in ext.field_rows(model):
                assert row.description in text, row.key
        assert "rate * (1 - exp(-gamma * t)); `x` |sub| a_ <tag> [1]_" in text


def test_every_guide_is_a_page_of_the_site():
    # docs/api/docs/<name>.md includes docs/<name>.md; sphinx -W fails on a page in no toctree.
    for guide in sorted((ROOT / "docs").glob("*.md")):
        stub = API / "docs" / guide.name
        assert stub.is_file(), f"{guide.name}: no page in the site (add {stub.relative_to(ROOT)})"
        assert f"```{{include}} ../../{guide.name}\n" in stub.read_text()
        assert f"   docs/{guide.stem}\n" in (API / "index.rst").read_text()


class TestPublicNames:
    def test_every_public_package_has_a_page(self):
        conf = runpy.run_path(str(API / "conf.py"))
        documented = set(conf["dropkit_api_packages"])
        # A module is public when its name has no leading "_" and it declares __all__ (dropkit.ops
        # holds the machinery under the public ops and declares nothing). The CLI: its --help.
        public = {
            f"dropkit.{info.name}"
            for info in pkgutil.iter_modules(dropkit.__path__)
            if not info.name.startswith("_")
            and info.name != "cli"
            and hasattr(importlib.import_module(f"dropkit.{info.name}"), "__all__")
        }
        assert public - documented == set(), "add these to dropkit_api_packages in docs/api/conf.py"
        for package in documented:
            assert (API / f"{package.split('.')[1]}.rst").read_text().count(package) >= 1
            assert f".. dropkit-summary:: {package}" in (API / "index.rst").read_text()

    def test_every_public_name_has_one_home_on_a_page(self):
        from sphinx.ext.autodoc.mock import mock

        conf = runpy.run_path(str(API / "conf.py"))
        packages = conf["dropkit_api_packages"]
        # The modules import as the build imports them: triton stood in for where it is absent (the
        # README's set-up installs no gpu extra), as conf.py's autodoc_mock_imports says; what was
        # imported against the stand-in is forgotten afterwards, so later tests see no triton.
        before = set(sys.modules)
        try:
            with mock(conf["autodoc_mock_imports"]):
                self._check_homes(packages)
        finally:
            if conf["autodoc_mock_imports"]:
                for name in set(sys.modules) - before:
                    if name.startswith(("triton", "dropkit.kernels.gpu")):
                        del sys.modules[name]
                kernels = sys.modules.get("dropkit.kernels")
                if kernels is not None and "gpu" in vars(kernels):
                    delattr(kernels, "gpu")

    @staticmethod
    def _check_homes(packages):
        homes = ext.api_homes(packages)
        pages = {p: "\n".join(ext.package_rst(p, homes)) for p in [*packages, "dropkit"]}
        for package in [*packages, "dropkit"]:
            for role, target, obj in ext.summary_rows(package, homes):
                if role == "mod":
                    assert any(f".. automodule:: {target}\n" in page for page in pages.values())
                    continue
                # Documented by exactly one directive, on one page.
                found = [p for p, page in pages.items() if f":: {target}\n" in page]
                assert len(found) == 1, (target, found)
                module, _, name = target.rpartition(".")
                assert getattr(importlib.import_module(module), name) is obj

    def test_a_re_export_points_to_the_definition(self):
        homes = ext.api_homes(["dropkit.nn", "dropkit.functional"])
        rows = {t.rpartition(".")[2]: t for _, t, _ in ext.summary_rows("dropkit", homes)}
        assert rows["Dropout"] == "dropkit.nn.dropout.Dropout"
        assert rows["dropout"] == "dropkit.functional.dropout.dropout"
        assert rows["nn"] == "dropkit.nn"
        assert rows["__version__"] == "dropkit.__version__"

    def test_a_constant_lives_in_the_deepest_module_listing_it(self):
        homes = ext.api_homes(["dropkit.data"])
        targets = {t for _, t, _ in ext.summary_rows("dropkit.data", homes)}
        assert "dropkit.data.uci.UCI_DATASETS" in targets
        assert "dropkit.data.UCI_DATASETS" not in targets
