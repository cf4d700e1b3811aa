"""``astrodb serve``: the app under uvicorn, in one process or several.

``workers`` processes each build their own app from the environment (``Settings.to_env``).
This module imports no more than uvicorn, so the supervising process stays small.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import time

from .settings import Settings

log = logging.getLogger("astrodb.service")

def serve(settings: Settings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          log_level: str = "info", access_log: bool = True) -> None:
    """Run the service under uvicorn until interrupted.

    With ``workers`` > 1 each worker process listens on its own SO_REUSEPORT socket, so the
    kernel spreads connections evenly over them (uvicorn's own workers share one socket, and
    whichever wakes first accepts a whole burst of keep-alive connections: measured 5 against
    27 of 32). A worker that dies is restarted.
    """
    import uvicorn

    os.environ.update(settings.to_env())   # what each worker process builds its app from
    if workers <= 1 or not hasattr(socket, "SO_REUSEPORT"):
        uvicorn.run(APP, factory=True, host=host, port=port, workers=workers if workers > 1 else None,
                    log_level=log_level, access_log=access_log)
        return
    _check_free(host, port)
    ctx = multiprocessing.get_context("spawn")
    args = (host, port, log_level, access_log)
    procs = [ctx.Process(target=_worker, args=args, name=f"astrodb-serve-{i}") for i in range(workers)]
    stopping = []

    def stop(signum, _frame):
        stopping.append(signum)
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.start()
        log.info("serving on http://%s:%d with %d worker processes", host, port, workers)
        restarts: list[float] = []
        while not stopping:
            time.sleep(0.5)
            for i, p in enumerate(procs):
                if p.is_alive() or stopping:
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > 2 * workers:
                    log.error("workers keep dying (exit code %s); stopping", p.exitcode)
                    stopping.append(None)
                    break
                log.warning("worker %d exited (code %s); restarting it", i, p.exitcode)
                procs[i] = ctx.Process(target=_worker, args=args, name=p.name)
                procs[i].start()
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()       # SIGTERM: uvicorn finishes the requests in flight
        for p in procs:
            p.join(15)
            if p.is_alive():
                p.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stopping and stopping[0] is None:
        raise SystemExit(1)


APP = "astrodb.service.app:create_app"


def _listen_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        from ..errors import ConfigError
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _check_free(host: str, port: int) -> None:
    """Fail here, once, when the address is taken (SO_REUSEPORT would let a second server of the
    same user share the port silently)."""
    from ..errors import ConfigError
    _listen_socket(host, port).close()
    probe = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    try:
        socket.create_connection((probe, port), timeout=0.5).close()
    except OSError:
        return
    raise ConfigError(f"cannot listen on {host}:{port}: something already listens there")


def _worker(host: str, port: int, log_level: str, access_log: bool) -> None:
    import uvicorn

    sock = _listen_socket(host, port)
    sock.listen(2048)
    config = uvicorn.Config(APP, factory=True, log_level=log_level, access_log=access_log)
    uvicorn.Server(config).run(sockets=[sock])
