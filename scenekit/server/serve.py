"""`scenekit serve`: settle the token, build the app and run it under uvicorn."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import uvicorn

from scenekit.errors import EXIT_INVALID_SPEC
from scenekit.server.app import ServerConfig, create_app
from scenekit.server.auth import is_loopback, resolve_token, token_file


def run_server(
    project: Path,
    host: str,
    port: int,
    token: str | None,
    no_auth: bool,
    cors_origins: list[str],
    say: Callable[[str], None],
    executor: str | None = None,
    address: str | None = None,
) -> int:
    """Serve until interrupted; the exit code (2 when `--no-auth` is asked for on a host others can reach).
    `executor` and `address` run every render (None: the user config's executor, else one worker per GPU)."""
    if no_auth and not is_loopback(host):
        say(f"error: --no-auth only with a loopback host (127.0.0.1, ::1, localhost), not {host}")
        return EXIT_INVALID_SPEC
    chosen: str | None = None
    if not no_auth:
        chosen, created = resolve_token(token)
        if created:
            say(f"API token (kept in {token_file()}; shown only this once): {chosen}")
    config = ServerConfig(project=project, token=chosen, cors_origins=cors_origins, executor=executor, address=address)
    app = create_app(config)
    shown = f"[{host}]" if ":" in host else host
    workers = config.workers()
    running = "the Ray executor" if workers == [None] else ", ".join(str(device) for device in workers)
    if config.in_processes():
        running += " (a process each)"
    say(
        f"serving {project.resolve()} at http://{shown}:{port}/  (page at /, API at /openapi.json; renders on {running})"
    )
    # open event streams end when the render does: without a limit, Ctrl-C would wait for them
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=3)
    return 0
