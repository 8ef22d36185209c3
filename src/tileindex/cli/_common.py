"""Shared CLI plumbing: logging set-up and mapping library errors to clean exits."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator

import click

from tileindex.errors import TileIndexError


def configure_logging(verbose: int) -> None:
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Turn a TileIndexError into a one-line message and exit status 1."""
    try:
        yield
    except TileIndexError as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
