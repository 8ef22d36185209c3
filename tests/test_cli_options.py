"""The shared options and error reporting of every ``tileindex`` command, through the runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
import shapely
from click.testing import CliRunner, Result

import tileindex
from tileindex.cli import main
from tileindex.errors import InclusionRuleError

from factories import build_args, make_inputs

# the inclusion rules docs/CONTRACT.md §5 defines
CONTRACT_PREDICATES = ("center", "any_overlap")
SRC = Path(tileindex.__file__).resolve().parents[1]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path, Path]:
    return make_inputs(tmp_path, {"AA": [shapely.box(-10, -10, 10, 10)]})


def _one_error(result: Result) -> tuple[str, dict]:
    """The single ``error:`` line and the single S1_ERROR event on stderr."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    events = [json.loads(line) for line in lines if line.startswith("{")]
    assert len(errors) == 1 and len(events) == 1, result.stderr
    assert events[0]["event"] == "S1_ERROR"
    assert "Traceback" not in result.output
    return errors[0], events[0]


def _command(name: str) -> click.Command:
    command = main.get_command(click.Context(main), name)
    assert command is not None
    return command


def _option(command: str, flag: str) -> click.Option:
    (option,) = [p for p in _command(command).params if flag in getattr(p, "opts", ())]
    assert isinstance(option, click.Option)
    return option


def _predicate_args(command: str, inputs: tuple[Path, Path, Path], out: Path) -> list[str]:
    files = ["--iso", str(inputs[0]), "--countries", str(inputs[1]), "--raster", str(inputs[2])]
    if command == "build":
        return build_args(*inputs, out)
    if command == "demo":
        return ["demo", "--out", str(out), "--quiet"]
    return ["parity", *files, "--codes", "AA"]


@pytest.mark.parametrize("command", ["build", "demo", "parity"])
def test_an_unknown_predicate_carries_e008_and_lists_the_valid_ones(
    command: str, inputs, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = [*_predicate_args(command, inputs, out), "--predicate", "centroid"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    line, event = _one_error(result)
    assert "E008_INCLUSION_RULE" in line and "'centroid'" in line
    assert all(p in line for p in CONTRACT_PREDICATES)
    assert event["code"] == "E008_INCLUSION_RULE"
    assert not out.exists()  # refused before anything was prepared or built


def test_the_cli_refuses_a_predicate_with_the_library_s_own_message(inputs, tmp_path) -> None:
    with pytest.raises(InclusionRuleError) as caught:
        tileindex.build(*inputs, tmp_path / "api", predicate="centroid")
    result = CliRunner().invoke(main, [*build_args(*inputs, tmp_path), "--predicate", "centroid"])
    line, _ = _one_error(result)
    assert line == f"error: E008_INCLUSION_RULE: --predicate: {caught.value.message}"


@pytest.mark.parametrize("command", ["build", "validate", "preview"])
@pytest.mark.parametrize("value", ["XYZ", "F" * 64, "f" * 63])
def test_a_bad_parameter_hash_is_refused_alike_by_every_command(
    command: str, value: str, inputs, tmp_path: Path
) -> None:
    files = ["--iso", str(inputs[0]), "--countries", str(inputs[1]), "--raster", str(inputs[2])]
    out = tmp_path / "out"
    args = {
        "build": build_args(*inputs, out),
        "validate": ["validate", "--out", str(tmp_path), *files],
        "preview": ["preview", "--out", str(tmp_path), "--png", str(tmp_path / "x.png")],
    }[command]
    result = CliRunner().invoke(main, [*args, "--parameter-hash", value])
    assert result.exit_code == 1
    line, event = _one_error(result)
    # docs/CONTRACT.md §7: 64 lowercase hex; the contract gives it no E-code
    assert f"--parameter-hash: parameter hash '{value}' is not 64 lowercase hex" in line
    assert line.endswith("(S1_BAD_INPUT)") and event["code"] == "S1_BAD_INPUT"
    assert not out.exists() and not (tmp_path / "x.png").exists()


@pytest.mark.parametrize(
    ("command", "role"),
    [
        ("build", "Written:"),
        ("prepare", "Written:"),
        ("demo", "Written:"),
        ("validate", "Read:"),
        ("preview", "Read:"),
    ],
)
def test_out_says_whether_it_is_written_or_read(command: str, role: str) -> None:
    option = _option(command, "--out")
    assert option.help is not None and option.help.startswith(role)
    assert role in CliRunner().invoke(main, [command, "--help"]).output


def test_metrics_out_is_an_output_path(inputs, tmp_path: Path) -> None:
    option = _option("build", "--metrics-out")
    assert option.help is not None and option.help.startswith("Written:")
    target = tmp_path / "not" / "yet" / "metrics.prom"  # neither the file nor its folder exist
    args = [*build_args(*inputs, tmp_path / "out"), "--workers", "1", "--metrics-out", str(target)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert target.is_file() and target.with_name("metrics.prom.json").is_file()


def _failing(command: str, inputs: tuple[Path, Path, Path], tmp: Path) -> tuple[list[str], str]:
    """Arguments that make ``command``'s library function fail, and the expected code."""
    files = ["--iso", str(inputs[0]), "--countries", str(inputs[1]), "--raster", str(inputs[2])]
    cases = {
        "build": (build_args(inputs[0], inputs[1], tmp / "nope.tif", tmp / "out"), "S1_BAD_INPUT"),
        "build-workers": ([*build_args(*inputs, tmp / "out"), "--workers", "0"], "S1_BAD_INPUT"),
        "prepare": (["prepare", "--out", str(tmp / "in"), "--resolution", "0"], "S1_BAD_INPUT"),
        "demo": (["demo", "--out", str(tmp / "d"), "--resolution", "0", "-q"], "S1_BAD_INPUT"),
        "validate": (["validate", "--out", str(tmp / "empty"), *files], "S1_BAD_INPUT"),
        "preview": (
            ["preview", "--out", str(tmp / "empty"), "--png", str(tmp / "x.png")],
            "S1_BAD_INPUT",
        ),
        "parity": (["parity", *files, "--codes", "XX"], "S1_BAD_INPUT"),
    }
    return cases[command]


@pytest.mark.parametrize(
    "command", ["build", "build-workers", "prepare", "demo", "validate", "preview", "parity"]
)
def test_a_library_error_is_one_line_with_its_code(command: str, inputs, tmp_path: Path) -> None:
    args, code = _failing(command, inputs, tmp_path)
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1
    line, event = _one_error(result)
    assert event["code"] == code
    assert line == f"error: {event['message']} ({code})"


def test_a_malformed_command_line_is_a_usage_error(inputs, tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["build", "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "Missing option '--iso'" in result.stderr
    assert not (tmp_path / "out").exists()


_LOADED_DASK = """
import json, sys
from tileindex.cli import main
try:
    main(sys.argv[1:], standalone_mode=False)
finally:
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("dask", "distributed"))
    print("DASK-MODULES " + json.dumps(loaded))
"""


def _dask_modules_after(*args: str) -> list[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("TILEINDEX_FAULTS", None)
    proc = subprocess.run(
        [sys.executable, "-c", _LOADED_DASK, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    marker = next(line for line in proc.stdout.splitlines() if line.startswith("DASK-MODULES "))
    return json.loads(marker.removeprefix("DASK-MODULES "))


def test_help_does_not_import_dask() -> None:
    # dask.distributed is the optional 'dask' extra: 'pip install -e .' has no dask
    assert _dask_modules_after("--help") == []


def test_demo_does_not_import_dask(tmp_path: Path) -> None:
    args = ["demo", "--out", str(tmp_path), "--resolution", "600", "--workers", "2"]
    assert _dask_modules_after(*args, "--quiet", "--no-cache") == []


@pytest.mark.parametrize(
    ("args", "status", "said"),
    [
        (["--version"], 0, "tileindex, version"),
        (["values", "--out", "no-such-root", "--raster", "x.tif"], 1, "(S1_BAD_INPUT)"),
        (["values", "--workers"], 2, "requires an argument"),
    ],
)
def test_the_program_ends_with_its_commands_status_and_output(
    tmp_path: Path, args: list[str], status: int, said: str
) -> None:
    # `python -m tileindex` (and the console script) run the command through
    # tileindex.cli.entry, which skips the interpreter's final collections
    done = subprocess.run(
        [sys.executable, "-m", "tileindex", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == status, done.stderr
    assert said in done.stdout + done.stderr


def test_the_program_freezes_the_collector_after_the_command(tmp_path: Path) -> None:
    # the interpreter's last collections are skipped only after the command has run
    code = (
        "import gc, sys\n"
        "from tileindex import cli\n"
        "gc.freeze = lambda: print('frozen', file=sys.stderr)\n"
        "sys.argv = ['tileindex', '--version']\n"
        "cli.entry()\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "tileindex, version" in done.stdout and done.stderr.strip() == "frozen"


def test_the_console_script_and_python_m_run_the_program_entry() -> None:
    from importlib.metadata import entry_points

    (script,) = [e for e in entry_points(group="console_scripts") if e.name == "tileindex"]
    assert script.value == "tileindex.cli:entry"
    main_module = (SRC / "tileindex" / "__main__.py").read_text(encoding="utf-8")
    assert "entry()" in main_module
