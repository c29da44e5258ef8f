"""``policy-engine serve``: the HTTP service (FastAPI on Uvicorn) over the same database
and settings as every other command. It scans nothing itself: the ingest workers
(``schedule``) do, fed through the database."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from policy_engine.cli.common import ConfigOpt, app, err, fail, settings_for
from policy_engine.errors import ConfigError, PolicyEngineError


@app.command()
def serve(
    ctx: typer.Context,
    host: Annotated[
        str, typer.Option(help="Address to listen on; loopback unless behind a proxy.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8470,
    workers: Annotated[int, typer.Option(help="Processes serving HTTP.")] = 1,
    config: ConfigOpt = None,
) -> None:
    """Serve the JSON API (/api/v1, OpenAPI at /api/docs) and /healthz, /readyz; stops
    gracefully on SIGTERM or Ctrl-C."""
    import uvicorn

    from policy_engine.service.workers import (
        BalancedMultiprocess,
        balanced_workers_available,
        reuse_port_sockets,
    )

    try:
        settings = settings_for(ctx, {}, config)
        if workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {workers}")
        if not 0 < port < 65536:
            raise ConfigError(f"--port must be between 1 and 65535, got {port}")
    except PolicyEngineError as exc:
        raise fail(exc) from None
    # Each worker process builds the app from the environment: hand the settings on.
    os.environ["POLICY_ENGINE_DB"] = settings.db
    if config is not None:
        os.environ["POLICY_ENGINE_CONFIG"] = str(Path(config).resolve())
    err.print(f"serving on http://{host}:{port} (database {settings.db})", markup=False)
    # Uvicorn stops gracefully on SIGTERM/SIGINT, then raises the signal again for the
    # handler in place before it: a stop asked for and done cleanly exits 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, lambda *_: sys.exit(0))
    options = dict(
        factory=True,
        host=host,
        port=port,
        workers=workers,
        proxy_headers=False,  # only behind a configured proxy (not yet a setting)
        log_config=None,  # the engine's own format (see app_from_environment)
        access_log=False,  # replaced by policy_engine.access, with the caller
        timeout_graceful_shutdown=30,
    )
    target = "policy_engine.service.app:app_from_environment"
    if workers > 1 and balanced_workers_available():  # one socket per worker: see workers.py
        try:
            slots = reuse_port_sockets(host, port, workers)
        except PolicyEngineError as exc:
            raise fail(exc) from None
        BalancedMultiprocess(uvicorn.Config(target, **options), slots).run()
        return
    uvicorn.run(target, **options)
