"""How the CLI reports an error: one line with its code, an S1_ERROR event, an exit status."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import click

from tileindex.errors import TileIndexError
from tileindex.telemetry import error_event

__all__ = ["clean_errors", "report_error"]


def report_error(exc: TileIndexError, option: str | None = None) -> None:
    """Print one line with the error's code and the docs/CONTRACT.md §8 ``S1_ERROR``
    event, both on stderr: ``error: E00N_CODE: message`` for a contract error (as
    ``str(exc)`` reads), ``error: message (S1_CODE)`` for one the contract gives no code.
    ``option`` names the command-line option whose value was refused."""
    message = f"{option}: {exc.message}" if option else exc.message
    phash = getattr(exc, "parameter_hash", None)
    event = error_event(exc.event_code, message, phash, **exc.context)
    line = f"{exc.code}: {message}" if exc.code else f"{message} ({exc.event_code})"
    click.echo(f"error: {line}", err=True)
    click.echo(json.dumps(event, sort_keys=True), err=True)


@contextlib.contextmanager
def clean_errors() -> Iterator[None]:
    """Turn a TileIndexError into :func:`report_error` and exit status 1 (never a
    traceback as the only explanation); Ctrl-C into exit status 130."""
    try:
        yield
    except TileIndexError as exc:
        report_error(exc)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        # staging is removed on the way out; the final paths never saw partial output
        click.echo("interrupted: nothing was published", err=True)
        raise SystemExit(130) from None
