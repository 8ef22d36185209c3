"""The public API: ``tileindex.__all__`` and what ``tileindex.build`` promises."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys

import pytest

import tileindex
import tileindex.errors
from tileindex.cli import build as cli_build
from tileindex.cli import demo as cli_demo
from tileindex.cli import parity as cli_parity
from tileindex.cli import prepare as cli_prepare
from tileindex.cli import preview as cli_preview
from tileindex.cli import validate as cli_validate


def test_every_exported_name_resolves_and_none_is_private() -> None:
    assert len(set(tileindex.__all__)) == len(tileindex.__all__)
    for name in tileindex.__all__:
        assert not name.startswith("_"), name
        assert getattr(tileindex, name) is not None, name
        assert not inspect.ismodule(getattr(tileindex, name)), name


@pytest.mark.parametrize("module", ["tileindex", "tileindex.tasks", "tileindex.cli"])
def test_importing_tileindex_leaves_out_what_only_some_commands_need(module: str) -> None:
    # every build worker, every CLI command and every reader imports tileindex: geopandas
    # and pyogrio (for `tileindex prepare` only), pandas (for pyarrow.dataset and
    # to_pandas) and numba (for encoding and values) cost about half a second each per
    # process, so only the code that uses them imports them
    heavy = ("pandas", "geopandas", "pyogrio", "numba")
    code = f"import sys, {module}; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_error_type_is_exported() -> None:
    errors = {
        name
        for name, obj in vars(tileindex.errors).items()
        if inspect.isclass(obj) and issubclass(obj, tileindex.errors.TileIndexError)
    }
    assert "InclusionRuleError" in errors and "TileIndexError" in errors
    assert errors <= set(tileindex.__all__)
    for name in errors:
        assert getattr(tileindex, name) is getattr(tileindex.errors, name)


@pytest.mark.parametrize(
    ("module", "attribute", "exported"),
    [
        (cli_build, "run_build", "build"),
        (cli_demo, "run_demo", "run_demo"),
        (cli_parity, "run_parity", "run_parity"),
        (cli_prepare, "prepare_inputs", "prepare_inputs"),
        (cli_preview, "render_preview", "render_preview"),
        (cli_validate, "validate_partition", "validate_partition"),
    ],
)
def test_each_command_calls_the_exported_function(module, attribute, exported) -> None:
    # a thin CLI: the function a subcommand calls is the one the API offers
    assert exported in tileindex.__all__
    assert getattr(module, attribute) is getattr(tileindex, exported)


def test_build_defaults_run_in_process_without_a_cache() -> None:
    params = inspect.signature(tileindex.build).parameters
    assert params["workers"].default == 1
    assert params["cache_dir"].default is None
    doc = inspect.getdoc(tileindex.build) or ""
    assert "workers=None" in doc and "default_cache_dir()" in doc  # how to get the CLI's


def _numpydoc_section(doc: str, title: str) -> str:
    match = re.search(rf"^{title}\n-+\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, re.M | re.S)
    assert match, f"no {title} section"
    return match.group(1)


def test_build_documents_every_parameter() -> None:
    doc = inspect.getdoc(tileindex.build) or ""
    section = _numpydoc_section(doc, "Parameters")
    documented = {
        name.strip()
        for line in section.splitlines()
        if line and not line.startswith(" ")
        for name in line.split(":")[0].split(",")
    }
    assert documented == set(inspect.signature(tileindex.build).parameters)
    assert "tileindex.build(" in _numpydoc_section(doc, "Examples")
