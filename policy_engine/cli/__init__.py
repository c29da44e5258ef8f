"""``policy-engine``: a thin command line over the Python API (pipeline, store, policy).

Exit codes (policy_engine.errors.EXIT_CODES): 0 ok, 1 unexpected error (or failed files
with --strict), 2 bad usage, settings or rules, 3 unreadable video, 4 model or device
problem, 5 database problem (also when it stops a run midway), 6 another ingest worker
holds the SQLite database (one at a time there).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from policy_engine import __version__

# isort: off
# they register commands; `policy-engine --help` lists them in this order
from policy_engine.cli import analysis, scanning, reevaluation, records, ask  # noqa: F401
from policy_engine.cli import ingest, pse, rules, search, serve, accounts  # noqa: F401

# isort: on
from policy_engine.cli.common import app, err, out


def _version(value: bool) -> None:
    if value:
        out.print(f"policy-engine {__version__}")
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="Database URL (env POLICY_ENGINE_DB). PostgreSQL:"
            " postgresql://user@host:5432/name \\[default: sqlite:///policy-engine.sqlite]",
            show_default=False,
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show version.")
    ] = False,
) -> None:
    """Broadcast-compliance and watershed policy engine."""
    ctx.obj = {"db": db}


def main() -> None:
    """Entry point: expected errors are handled per command; anything else is a bug, shown
    as one line unless POLICY_ENGINE_DEBUG is set (then with its traceback)."""
    try:
        app()
    except Exception as exc:  # noqa: BLE001 - last line of defence for the user
        if os.environ.get("POLICY_ENGINE_DEBUG"):
            raise
        if _from_the_database_driver(exc):  # not wrapped by the store: still exit 5
            err.print(
                f"[bold red]error:[/] the database failed: {escape(_one_line(exc))}",
                highlight=False,
            )
            sys.exit(5)
        err.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))}\n"
            "  This is a bug; rerun with POLICY_ENGINE_DEBUG=1 for the traceback and report it.",
            highlight=False,
        )
        sys.exit(1)


def _from_the_database_driver(exc: BaseException) -> bool:
    """A driver error that reached the command without the store's wording: a database
    problem all the same."""
    from policy_engine.store.driver import is_driver_error

    return is_driver_error(exc)


def _one_line(exc: BaseException) -> str:
    detail = getattr(exc, "orig", None) or exc
    return " ".join(str(detail).split())


__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
