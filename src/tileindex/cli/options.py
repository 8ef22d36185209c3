"""Every option the ``tileindex`` commands share, defined once.

A flag means the same wherever it appears; where one name has two roles, the help text
of each command says which (``Written:`` or ``Read:``).

--out DIR             build: the output root, written (datasets, reports and the event
                      log go below it; created if missing).
                      validate, preview: an output root that 'tileindex build' wrote,
                      read.
                      prepare: the folder the three prepared inputs are written to.
                      demo: the folder the demo writes everything to (inputs, output
                      root, preview map).
--iso FILE            read: the ISO 3166 list (parquet or CSV, column country_iso).
--countries FILE      read: the country polygons (GeoParquet, EPSG:4326).
--regions FILE        read: build, validate: an alias of --countries, for a region layer.
--key-column NAME     build, validate: the layer's key column, the name of the output's
                      first column (default country_iso; another name is region mode,
                      docs/CONTRACT.md §10.1).
--keys FILE           read: build, validate: region mode's key list (parquet or CSV,
                      column NAME); optional, in place of --iso.
--raster FILE         read: the raster that defines the grid (docs/CONTRACT.md §2).
--parameter-hash HEX  64 lowercase hex (docs/CONTRACT.md §7). build: the identity to
                      publish under instead of the derived one; validate, preview: the
                      partition to read (default: the only one under --out).
--dictionary FILE     read: the dataset dictionary YAML (default: the built-in one).
--predicate NAME      the inclusion rule, center, any_overlap or within
                      (docs/CONTRACT.md §5, §10.2); parity also takes both.
--workers N           worker processes (default: all cores; 1 runs in
                      this process).
--resolution ARCSEC   grid cell size in arc-seconds (30 = the WorldPop 1 km grid).
--metrics-out FILE    written: run metrics in Prometheus text format (and FILE.json).
--json                print the result as JSON on stdout.
-q, --quiet           no progress display on stderr.
--coverage            build: also publish tile_coverage, the exact fraction of every
                      cell covered by its country (docs/CONTRACT.md §10.3).
--window, --samples, --seed
                      validate, parity: the side in cells, number and seed of the
                      windows re-decided by the legacy engine.

Values the contract defines (a predicate, a parameter hash) are checked by the same
library function the API uses (:class:`ContractValue`), so a refusal carries the
contract's error code whether the CLI or the library sees the value first, and reads
like any error the library raises (:func:`tileindex.cli.errors.report_error`): one line
with its code and an ``S1_ERROR`` event on stderr (docs/CONTRACT.md §8), exit status 1.
Other values the library checks (``--workers``, ``--chunk-size``, ``--resolution``)
are passed through and refused by it the same way. A malformed command line (a missing
or unknown option, a value of the wrong shape such as ``--bbox 1,2,3``, an option that
does not apply in the mode asked for, such as ``--iso`` with ``--key-column NAME``) is a
click usage error, exit status 2.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click

from tileindex.cli.errors import report_error
from tileindex.contract import (
    DEFAULT_KEY_COLUMN,
    check_key_column,
    check_parameter_hash,
    is_region_mode,
)
from tileindex.errors import InclusionRuleError, TileIndexError
from tileindex.predicates import PREDICATES, check_predicate
from tileindex.prepare import WORLDPOP_ARCSEC

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]

__all__ = [
    "ContractValue",
    "OptionError",
    "coverage_option",
    "dictionary_option",
    "input_options",
    "json_option",
    "layer_input_options",
    "metrics_out_option",
    "out_read_option",
    "out_written_option",
    "parameter_hash_option",
    "predicate_option",
    "quiet_option",
    "resolution_option",
    "window_options",
    "workers_option",
]


class OptionError(click.ClickException):
    """A refused option value, shown like a library error: one line with its code, an
    ``S1_ERROR`` event, exit status 1."""

    exit_code = 1

    def __init__(self, error: TileIndexError, option: str | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.option = option

    def show(self, file: Any = None) -> None:
        report_error(self.error, self.option)


def _option_name(param: click.Parameter | None) -> str | None:
    if param is None:
        return None
    opts = getattr(param, "opts", None)
    return max(opts, key=len) if opts else param.name


class ContractValue(click.ParamType):
    """A value checked by the library's own checker (a ``TileIndexError`` on refusal).

    ``choices``, when given, are offered by ``--help`` and shell completion; the checker
    alone decides what is valid, so its error (and code) is the one the user sees.
    """

    def __init__(
        self, name: str, check: Callable[[str], object], choices: Sequence[str] = ()
    ) -> None:
        self.name = name
        self._check = check
        self.choices = tuple(choices)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            self._check(value)
        except TileIndexError as exc:
            raise OptionError(exc, _option_name(param)) from None
        return value

    def shell_complete(
        self, ctx: click.Context, param: click.Parameter, incomplete: str
    ) -> list[Any]:
        from click.shell_completion import CompletionItem

        return [CompletionItem(c) for c in self.choices if c.startswith(incomplete)]


def _check_parity_predicate(value: str) -> None:
    if value != "both" and value not in PREDICATES:
        raise InclusionRuleError(
            f"unknown predicate {value!r}; valid predicates are {', '.join(PREDICATES)}, "
            "or both to compare each"
        )


def _stack(*options: Decorator) -> Decorator:
    def apply(fn: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


_INPUT_FILE = click.Path(path_type=Path, dir_okay=False)  # existence: the reader's message
_OUTPUT_FILE = click.Path(path_type=Path, dir_okay=False)  # written; need not exist


def out_written_option(help: str, default: Path | None = None, dest: str = "out") -> Decorator:
    """``--out`` as a folder a command writes (build, prepare, demo)."""
    # click >= 8.3 takes an explicit default=None as a default, which defeats required
    given: dict[str, Any] = {"required": True} if default is None else {"default": default}
    return click.option(
        "--out",
        dest,
        type=click.Path(path_type=Path, file_okay=False),
        show_default=default is not None,
        metavar="DIR",
        help=f"Written: {help}",
        **given,
    )


def out_read_option(dest: str = "out") -> Decorator:
    """``--out`` as the output root of a build that a command reads (validate, preview)."""
    return click.option(
        "--out",
        dest,
        # not exists=True: the library's error says how to get a root ('tileindex build')
        type=click.Path(path_type=Path, file_okay=False),
        required=True,
        metavar="DIR",
        help="Read: the output root that 'tileindex build --out' wrote.",
    )


def _iso_option(required: bool) -> Decorator:
    return click.option(
        "--iso",
        "iso",
        type=_INPUT_FILE,
        required=required,
        default=None,
        help="Read: ISO 3166 list (parquet or CSV, column country_iso)."
        + ("" if required else " Country mode only (required there)."),
    )


def _countries_option(required: bool) -> Decorator:
    return click.option(
        "--countries",
        type=_INPUT_FILE,
        required=required,
        default=None,
        help="Read: country polygons (GeoParquet, EPSG:4326, columns country_iso, geom)"
        + ("." if required else "; with --key-column NAME, columns NAME, geom."),
    )


def _raster_option(required: bool) -> Decorator:
    return click.option(
        "--raster",
        type=_INPUT_FILE,
        required=required,
        default=None,
        help="Read: raster that defines the grid (any GDAL raster, EPSG:4326, north-up).",
    )


input_options = _stack(_iso_option(True), _countries_option(True), _raster_option(True))
"""The three sealed inputs of the country contract, as the commands that read only
countries (parity) name them."""

_key_column_option = click.option(
    "--key-column",
    type=ContractValue("NAME", check_key_column),
    default=DEFAULT_KEY_COLUMN,
    show_default=True,
    metavar="NAME",
    help="The layer's key column, and the name of the output's first column. Any name but "
    "country_iso is region mode: keys are any UTF-8 strings (1-128 bytes, no control "
    "characters), sorted by their bytes; the layer is --regions (or --countries) and the "
    "key list --keys (optional).",
)
_keys_option = click.option(
    "--keys",
    type=_INPUT_FILE,
    default=None,
    metavar="FILE",
    help="Read: region mode's key list (parquet or CSV, column NAME of --key-column): the "
    "regions to visit and the only keys the output may carry (default: every key of the "
    "layer).",
)
_regions_option = click.option(
    "--regions",
    type=_INPUT_FILE,
    default=None,
    metavar="FILE",
    help="Read: the region layer (GeoParquet, EPSG:4326, columns NAME and geom); an alias "
    "of --countries.",
)


def resolve_layer_inputs(
    key_column: str,
    iso: Path | None,
    keys: Path | None,
    countries: Path | None,
    regions: Path | None,
    raster: Path | None,
) -> tuple[Path | None, Path, Path]:
    """The key list (the ISO list in country mode; in region mode the key list or None),
    the layer and the raster, from the options given; a missing input or a combination
    that does not apply is a usage error (docs/CONTRACT.md §10.1)."""
    if countries is not None and regions is not None:
        raise click.UsageError("--countries and --regions name the same input; pass the layer once")
    if not is_region_mode(key_column) and iso is None and keys is None:
        raise click.UsageError(
            "Missing option '--iso' (the ISO list; region mode, --key-column NAME, takes "
            "an optional --keys instead)."
        )
    layer = countries if countries is not None else regions
    if layer is None:
        raise click.UsageError("Missing option '--countries' (or its alias '--regions').")
    if raster is None:
        raise click.UsageError("Missing option '--raster'.")
    if is_region_mode(key_column):
        if iso is not None:
            raise click.UsageError(
                f"--iso does not apply in region mode (--key-column {key_column}); pass the "
                "key list as --keys, or omit it to visit every key of the layer"
            )
        return keys, layer, raster
    if keys is not None:
        raise click.UsageError(
            "--keys is region mode's key list (with --key-column NAME other than "
            "country_iso); in country mode pass the ISO list as --iso"
        )
    if iso is None:
        raise click.UsageError(
            "Missing option '--iso' (the ISO list; region mode, --key-column NAME, takes "
            "an optional --keys instead)."
        )
    return iso, layer, raster


def layer_input_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The sealed inputs of a command that reads any layer (build, validate):
    ``--key-column``, ``--iso``/``--keys``, ``--countries``/``--regions``, ``--raster``.
    The command receives ``key_column``, ``iso`` (the ISO list, or region mode's key list
    or None), ``countries`` (the layer) and ``raster``."""

    @functools.wraps(fn)
    def resolved(
        *args: Any,
        key_column: str,
        iso: Path | None,
        keys: Path | None,
        countries: Path | None,
        regions: Path | None,
        raster: Path | None,
        **kwargs: Any,
    ) -> Any:
        iso, layer, raster = resolve_layer_inputs(key_column, iso, keys, countries, regions, raster)
        return fn(*args, key_column=key_column, iso=iso, countries=layer, raster=raster, **kwargs)

    return _stack(
        _key_column_option,
        _iso_option(False),
        _keys_option,
        _countries_option(False),
        _regions_option,
        _raster_option(False),
    )(resolved)


def parameter_hash_option(help: str) -> Decorator:
    """``--parameter-hash``, checked like the library checks it."""
    return click.option(
        "--parameter-hash",
        type=ContractValue("HEX", check_parameter_hash),
        default=None,
        metavar="HEX",
        help=f"64 lowercase hex: {help}",
    )


def dictionary_option(
    help: str = "Dataset dictionary YAML (default: the built-in one).",
) -> Decorator:
    return click.option(
        "--dictionary", type=_INPUT_FILE, default=None, metavar="FILE", help=f"Read: {help}"
    )


_PREDICATE_HELP = (
    "center: the cell's centroid is in the country; "
    "any_overlap: cell and country overlap with positive area; "
    "within: the whole cell lies in the country."
)


def predicate_option(compare: bool = False) -> Decorator:
    """``--predicate``; with ``compare`` (parity) it also takes ``both``, the default."""
    choices = (*PREDICATES, "both") if compare else PREDICATES
    return click.option(
        "--predicate",
        type=ContractValue(
            "predicate", _check_parity_predicate if compare else check_predicate, choices
        ),
        default="both" if compare else "center",
        show_default=True,
        metavar=f"[{'|'.join(choices)}]",
        help=("Predicate(s) to compare. " if compare else "") + _PREDICATE_HELP,
    )


def _workers(help: str) -> Decorator:
    return click.option(
        "--workers",
        type=int,  # the library refuses < 1, with the same message as the API's
        default=None,
        metavar="N",
        help=help,
    )


def workers_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _workers("Worker processes (default: all cores; 1 runs in this process).")(fn)


def thread_workers_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return _workers(
        "Worker threads of this process (default: all cores; 1 runs in the main thread)."
    )(fn)


def resolution_option(dest: str = "resolution", help: str = "") -> Decorator:
    return click.option(
        "--resolution",
        dest,
        type=float,
        default=WORLDPOP_ARCSEC,
        show_default=True,
        metavar="ARCSEC",
        help="Grid cell size in arc-seconds (30 = the WorldPop 2020 1 km grid, exactly)."
        + (f" {help}" if help else ""),
    )


def metrics_out_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--metrics-out",
        type=_OUTPUT_FILE,
        default=None,
        metavar="FILE",
        help="Written: run metrics in Prometheus text format to FILE (and FILE.json).",
    )(fn)


def json_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--json", "as_json", is_flag=True, help="Print the result as JSON on stdout."
    )(fn)


def quiet_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-q", "--quiet", is_flag=True, help="No progress display on stderr.")(fn)


def coverage_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``--coverage`` (docs/CONTRACT.md §10.3)."""
    return click.option(
        "--coverage",
        is_flag=True,
        help="Also publish tile_coverage: for every row of tile_index, the exact fraction "
        "of the cell's area (in lon/lat degrees) that lies in the country; 1.0 exactly "
        "iff the whole cell does. Enters the parameter hash; tile_index and tile_bounds "
        "keep their bytes.",
    )(fn)


def window_options(window: int, samples: int, samples_help: str, min_samples: int = 0) -> Decorator:
    """``--window``, ``--samples`` and ``--seed`` of the commands that draw windows."""
    return _stack(
        click.option(
            "--window",
            type=click.IntRange(min=1),
            default=window,
            show_default=True,
            help="Side of a window, in cells.",
        ),
        click.option(
            "--samples",
            type=click.IntRange(min=min_samples),
            default=samples,
            show_default=True,
            help=samples_help,
        ),
        click.option(
            "--seed", type=int, default=0, show_default=True, help="Seed of the window draw."
        ),
    )
