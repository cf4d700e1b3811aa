"""The provenance record's gwcs serialization, in a worker process beside the caller's.

asdf turns a gwcs into YAML, and validates it, in pure Python with the GIL held, while the
caller's thread is busy with the fit, also Python: threads cannot share that work out, a
process can. The caller pickles each input gwcs when the recorder captures it (a snapshot of
the WCS as it is then; aligned ones are recorded as corrections of these, see
:mod:`aligner.provenance`), and a worker process serializes it with the
same code (:func:`astrodb.provenance.wcs_bytes.serialize_wcs`) in the same environment, so the
record holds the same bytes.

One worker per process, started when the first recorded gwcs run has been written (its start,
imports and a first serialization, would take CPU from that run) and used by the runs after it:
until it is ready, and whenever it is gone or fails, the caller serializes the WCS itself (from
the snapshot it pickled), so a record never depends on the worker. ``ALIGNER_RECORD_PROCESS=0``
switches it off.

The worker is a fresh interpreter running this module (``python -m aligner.wcs_serializer``),
not a :class:`concurrent.futures.ProcessPoolExecutor`: a spawned pool worker first imports the
caller's ``__main__`` (a script that aligns outside ``if __name__ == "__main__":`` would align
again there), and Python 3.11's pool joins a worker that is still starting when the caller
exits (seconds more after a single recorded run), where this one is killed.

Protocol (pipes): the parent writes ``(id, length) + pickle`` frames to the worker's stdin, and
``(id, CANCEL)`` for a WCS it has serialized itself meanwhile (the worker skips it if it has not
started it); the worker answers ``(id, status, length) + bytes`` (status 0: the ASDF bytes, 1:
the error text) on a private copy of its stdout; its fd 1 is pointed at stderr, so a stray print
cannot break the frames. It reads requests on a thread of its own, so the parent's writes do not wait for the
WCS being serialized, and exits when its stdin closes (at the parent's exit, or if the parent
dies).
"""
from __future__ import annotations

import atexit
import logging
import os
import pickle
import struct
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout

from astrodb.provenance.wcs_bytes import serialize_wcs, wcs_kind

log = logging.getLogger(__name__)

_REQUEST = struct.Struct("<QQ")    # id, payload length
_REPLY = struct.Struct("<QBQ")     # id, status (0 ok, 1 error), length
_READY = b"R"
#: The length of a request that cancels request ``id`` instead of sending a WCS.
CANCEL = 2 ** 64 - 1
#: Longest wait for one WCS from the worker before the caller serializes it itself.
WAIT_S = 120.0
#: Starts per process: a worker that keeps dying is not started again.
MAX_STARTS = 3
#: The worker's niceness increment: its start-up takes only what the caller's threads leave.
NICE = 10


def _enabled_from_environment() -> bool:
    value = os.environ.get("ALIGNER_RECORD_PROCESS", "").strip()
    if value in ("", "1"):
        return True
    if value == "0":
        return False
    raise ValueError(f"ALIGNER_RECORD_PROCESS must be 0 (serialize in the caller) or 1 (a worker process), "
                     f"got {value!r}")


#: Whether recorded gwcs runs use a worker process (``ALIGNER_RECORD_PROCESS``, default 1).
ENABLED = _enabled_from_environment()


class WorkerGone(RuntimeError):
    """The worker process exited (or could not start) before it answered."""


class _Worker:
    """One worker process and the futures of the WCSs it serializes."""

    def __init__(self) -> None:
        self.owner = os.getpid()
        self.ready = threading.Event()
        self.settled = threading.Event()  # ready, or gone before it was
        self.dead = False
        self.closing = False
        self._lock = threading.Lock()
        self._pending: dict[int, Future] = {}
        self._next = 0
        import aligner
        import astrodb
        # The packages from where this process imported them (a test or a checkout may have put
        # them on sys.path), then the caller's own PYTHONPATH.
        roots = {os.path.dirname(os.path.dirname(os.path.abspath(m.__file__))) for m in (aligner, astrodb)}
        path = os.pathsep.join(sorted(roots) + [p for p in [os.environ.get("PYTHONPATH")] if p])
        self.proc = subprocess.Popen([sys.executable, "-m", "aligner.wcs_serializer"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=dict(os.environ, PYTHONPATH=path), bufsize=0)
        threading.Thread(target=self._read_replies, name="aligner-record-worker", daemon=True).start()

    def _read_replies(self) -> None:
        out = self.proc.stdout
        try:
            if _read_exactly(out, len(_READY)) != _READY:
                raise WorkerGone("the worker process did not start")
            self.ready.set()
            self.settled.set()
            while True:
                rid, status, n = _REPLY.unpack(_read_exactly(out, _REPLY.size))
                data = _read_exactly(out, n)
                with self._lock:
                    fut = self._pending.pop(rid, None)
                if fut is None:
                    continue
                if status == 0:
                    fut.set_result(data)
                else:
                    fut.set_exception(RuntimeError(data.decode(errors="replace")))
        except Exception as exc:  # noqa: BLE001 - EOF, a broken pipe or frame: the worker is done
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        with self._lock:
            if not self.dead and not self.closing:
                code = self.proc.poll()
                log.warning("aligner: the record's worker process stopped (%s; exit code %s): "
                            "WCSs are serialized in this process", exc, code)
            self.dead = True
            pending, self._pending = self._pending, {}
        self.settled.set()
        for fut in pending.values():
            fut.set_exception(WorkerGone(str(exc)))

    def submit(self, payload: bytes) -> tuple[int, Future]:
        fut: Future = Future()
        with self._lock:
            if self.dead:
                raise WorkerGone("the worker process has stopped")
            rid = self._next
            self._next += 1
            self._pending[rid] = fut
            try:
                self.proc.stdin.write(_REQUEST.pack(rid, len(payload)) + payload)
            except (OSError, ValueError) as exc:
                self._pending.pop(rid, None)
                raise WorkerGone(str(exc)) from exc
        return rid, fut

    def cancel(self, rid: int) -> None:
        """The caller has request ``rid``'s bytes: the worker need not serialize them."""
        with self._lock:
            if self.dead or self._pending.pop(rid, None) is None:
                return
            try:
                self.proc.stdin.write(_REQUEST.pack(rid, CANCEL))
            except (OSError, ValueError):
                pass  # a worker gone: _read_replies says so

    def close(self, wait: float = 0.2) -> None:
        """Stop the worker: its input is closed (a ready worker then exits), and it is killed
        if it is still starting or has not exited within ``wait`` s. What it has not answered,
        the callers serialize themselves; a process that exits is not held up by it."""
        if self.owner != os.getpid():
            return  # a forked child: the worker is its parent's
        self.closing = True
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(wait if self.ready.is_set() else 0)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


_lock = threading.Lock()
_worker: _Worker | None = None
_starts = 0


def _current(start: bool = False) -> _Worker | None:
    """This process' worker; with ``start``, started now if there is none (or it stopped)."""
    global _worker, _starts
    with _lock:
        if _worker is not None and (_worker.owner != os.getpid() or _worker.dead):
            if _worker.owner == os.getpid():
                _worker.close()
            _worker = None  # a forked child's copy of its parent's worker is not its own
        if start and _worker is None and _starts < MAX_STARTS and sys.executable and ENABLED:
            _starts += 1
            try:
                _worker = _Worker()
            except (OSError, ImportError) as exc:
                log.warning("aligner: no worker process for the record (%s): WCSs are serialized in this "
                            "process", exc)
                _worker = None
        return _worker


def start() -> None:
    """Start this process' worker unless it runs (or is switched off): the recorder does so
    after it has written a gwcs run, so that the worker's start-up does not take CPU from
    that run, and the next run finds it ready."""
    _current(start=True)


def wait_ready(timeout: float = 30.0) -> bool:
    """Wait until the worker is ready (it is started if need be); False if there is none."""
    w = _current(start=True)
    return w is not None and w.settled.wait(timeout) and w.ready.is_set() and not w.dead


def stop() -> None:
    """Stop this process' worker (a later recorded run starts a new one)."""
    global _worker, _starts
    with _lock:
        w, _worker = _worker, None
        _starts = 0  # a worker stopped on purpose is no sign of one that keeps dying
    if w is not None:
        w.close()


atexit.register(stop)


class Serialized:
    """A WCS's record bytes: serialized already, or on their way from the worker process.

    :meth:`result` returns the bytes. Where the worker has not answered (yet, or at all), the
    WCS is serialized here, from the snapshot that was sent (the WCS as it was then).
    """

    def __init__(self, data: bytes | None = None, payload: bytes | None = None, future: Future | None = None,
                 cancel: Callable[[], None] | None = None):
        self._data, self._payload, self._future, self._cancel = data, payload, future, cancel
        self._error: Exception | None = None

    def result(self, wait: bool = True) -> bytes:
        """The bytes: with ``wait``, waits for the worker (up to :data:`WAIT_S`); without,
        serializes here what the worker has not done yet. Raises what serializing here raised."""
        if self._error is not None:
            raise self._error
        if self._data is None:
            fut = self._future
            try:
                if not wait and not fut.done():
                    raise FutureTimeout
                self._data = fut.result(timeout=WAIT_S)
            except (WorkerGone, RuntimeError, FutureTimeout) as exc:
                if wait and isinstance(exc, FutureTimeout):
                    log.warning("aligner: the record's worker process took over %.0f s: serializing here", WAIT_S)
                if self._cancel is not None:
                    self._cancel()
                try:
                    self._data = serialize_wcs(pickle.loads(self._payload))
                except Exception as err:
                    self._error = err
                    raise
            self._payload = self._future = self._cancel = None
        return self._data


def gather(items: list[Serialized]) -> None:
    """Have every item's bytes, sharing the work left with the worker: the worker answers in
    the order the items were sent, so this process serializes, from the last item back, each
    one it has not answered yet (a worker behind, or given little CPU, costs no waiting)."""
    for item in reversed(items):
        try:
            item.result(wait=False)
        except Exception:  # noqa: BLE001 - raised again where the item's bytes are asked for
            pass


def submit(wcs) -> Serialized | None:
    """Send a gwcs to the worker process to be serialized for the record; None when there is no
    ready worker (see :func:`start`), or the WCS is not a gwcs or cannot be pickled: the caller
    serializes it itself."""
    if wcs_kind(wcs) != "gwcs":
        return None
    w = _current()
    if w is None or not w.ready.is_set():
        return None
    try:
        payload = pickle.dumps(wcs, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # noqa: BLE001 - not picklable: serialized by the caller
        return None
    try:
        rid, fut = w.submit(payload)
    except WorkerGone:
        return None
    return Serialized(payload=payload, future=fut, cancel=lambda: w.cancel(rid))


def _read_exactly(stream, n: int) -> bytes:
    chunks, got = [], 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            raise EOFError("end of stream")
        chunks.append(b)
        got += len(b)
    return b"".join(chunks)


# --- the worker process ---------------------------------------------------------------------

def _warm_up() -> None:
    """Load asdf's extensions and the gwcs/transform converters before the first real WCS."""
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gwcs_wcs

    det = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    tr = (models.Shift(0) & models.Shift(0)) | models.Scale(1e-5) & models.Scale(1e-5) | \
        models.Pix2Sky_TAN() | models.RotateNative2Celestial(10.0, 20.0, 180.0)
    serialize_wcs(gwcs_wcs.WCS(forward_transform=tr, input_frame=det, output_frame=sky))


def _serve() -> None:
    import queue
    import warnings

    if hasattr(os, "nice"):
        try:
            os.nice(NICE)
        except OSError:
            pass
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    # The caller would see these on its own serialization of the same WCS; here they are noise.
    warnings.simplefilter("ignore")
    _warm_up()
    requests: queue.SimpleQueue = queue.SimpleQueue()

    cancelled: set[int] = set()

    def read_requests() -> None:
        # On its own thread: the caller's writes never wait for a WCS being serialized.
        src = sys.stdin.buffer
        try:
            while True:
                rid, n = _REQUEST.unpack(_read_exactly(src, _REQUEST.size))
                if n == CANCEL:
                    cancelled.add(rid)
                else:
                    requests.put((rid, _read_exactly(src, n)))
        except (EOFError, OSError):
            requests.put(None)

    threading.Thread(target=read_requests, daemon=True).start()
    replies.write(_READY)
    while (item := requests.get()) is not None:
        rid, payload = item
        if rid in cancelled:
            cancelled.discard(rid)
            continue
        try:
            data, status = serialize_wcs(pickle.loads(payload)), 0
        except Exception as exc:  # noqa: BLE001 - answered; the caller serializes it itself
            data, status = f"{type(exc).__name__}: {exc}".encode(), 1
        replies.write(_REPLY.pack(rid, status, len(data)) + data)


if __name__ == "__main__":
    _serve()
