"""The ``tileindex`` command line: one module per subcommand, each parsing its options
(shared ones from :mod:`tileindex.cli.options`) and calling one library function."""

from __future__ import annotations

import gc
import logging

import click

__all__ = ["entry", "main"]


def configure_logging(verbose: int) -> None:
    """The only place that sets up logging handlers (the library only logs)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(package_name="tileindex")
@click.option("-v", "--verbose", count=True, help="More log output (repeat for debug).")
def main(verbose: int) -> None:
    """Exact country membership for every cell of a global lon/lat raster grid.

    \b
    Start here (real borders, the whole world, a map at the end):
      tileindex demo
    \b
    With your own inputs (or those of 'tileindex prepare --out inputs/'):
      tileindex build --iso iso.parquet --countries countries.parquet \\
                      --raster grid.tif --out out/
      tileindex validate --out out/ --iso ... --countries ... --raster ...
      tileindex preview --out out/ --png map.png
    Run 'tileindex COMMAND --help' for a command's options.
    """
    configure_logging(verbose)


def entry() -> None:
    """The ``tileindex`` program (the console script and ``python -m tileindex``): the
    command, then the end of the process without the interpreter's final garbage
    collections. Those walk every object still alive, most of them numba's, only to free
    memory the process gives back as it ends (``benchmarks/values.py`` shows the time a
    command spends outside its library call); the commands have closed and synced every
    file they wrote by then."""
    try:
        main()  # exits with the command's status (SystemExit)
    finally:
        gc.freeze()


def _register() -> None:
    from tileindex.cli import build, demo, lookup, parity, prepare, preview, validate, values
    from tileindex.cli import mask as mask_cmd
    from tileindex.cli import sample as sample_cmd

    main.add_command(build.build)
    main.add_command(demo.demo)
    main.add_command(lookup.lookup)
    main.add_command(parity.parity)
    main.add_command(prepare.prepare)
    main.add_command(preview.preview)
    main.add_command(validate.validate)
    main.add_command(values.values)
    main.add_command(sample_cmd.sample)
    main.add_command(mask_cmd.mask)


_register()
