"""Runs the API's HTTP server: `python -m api [--host H] [--port P] [--workers N]`.

Every place that starts an API worker starts it through here (ops/run.sh, the image, the tests,
the benchmark), so they all run the server as production does: uvicorn on uvloop, HTTP/1.1 parsed
by httptools, in the event loop's own thread, with POST /orders answered by the protocol itself
(api.order_protocol). README ("Where the API's time goes") says why this server and not granian,
which hands each request and its body between its own threads and the event loop.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, Final

import uvicorn

from api.order_protocol import OrderProtocol
from telemetry.logs import json_logging_config

APP: Final = "api.app:app"
# Longer than the gateway keeps an idle connection to a worker (keepalive_timeout in
# ops/gateway/nginx.conf.template): the gateway, not the worker, closes an idle connection, so it
# never sends an order down a connection the worker is closing at that moment.
KEEP_ALIVE_S: Final = 75
# On SIGTERM: stop accepting, let requests in flight finish, then close what is still open (a
# live stock stream does not end by itself).
GRACEFUL_SHUTDOWN_S: Final = 10


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m api", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes behind one port (the gateway balances one-process workers instead)",
    )
    parser.add_argument(
        "--app",
        default=APP,
        help="the ASGI app, module:attribute (the benchmark serves its no-op reference with it)",
    )
    return parser.parse_args(argv)


def server_options() -> dict[str, Any]:
    """uvicorn's settings for an API worker, all but what it serves and where."""
    return {
        "loop": "uvloop",
        # httptools' protocol, POST /orders taken before ASGI when the app has that route's
        # intake, which it finds only on the app itself (no middleware of uvicorn's around it);
        # any other app is served as by http="httptools".
        "http": OrderProtocol,
        "ws": "none",
        "lifespan": "on",
        "access_log": False,
        # The server's own lines (start, stop, a request it could not parse) as JSON like the
        # app's, set up in every worker process it starts.
        "log_config": json_logging_config(),
        "server_header": False,
        # Nothing reads the client's address; the gateway's X-Forwarded-For need not be parsed.
        "proxy_headers": False,
        "timeout_keep_alive": KEEP_ALIVE_S,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    uvicorn.run(args.app, host=args.host, port=args.port, workers=args.workers, **server_options())


if __name__ == "__main__":
    main()
