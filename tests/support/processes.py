"""Real processes and a real HTTP peer for end-to-end tests (and the benches).

- :func:`wait_until` — poll a condition with a deadline; never sleep blindly.
- :class:`ServiceProcess` — one subprocess in its own process group, output in a log
  file, started and stopped (or SIGKILLed, group and all) on demand.
  :func:`start_uvicorn`, :func:`start_celery_worker` and :func:`start_celery_beat` build
  the usual three, as DESIGN.md §8 names them, and return once they are ready
  (``/healthz`` answers; the worker logged ``ready``; beat started).
- :class:`RedisServer` — a private ``redis-server`` on a free loopback port: a broker
  and cache no other test sees, that a test can stop and start again ("Redis down").
- :class:`LoopbackReceiver` — a threaded HTTP server on loopback. Each
  :meth:`~LoopbackReceiver.endpoint` gets its own URL prefix, records every request it
  receives (method, path, headers, body, arrival time) and answers what its responder
  says: a status, headers, a body, after an optional delay. :func:`replies` scripts the
  answers per ``webhook-id`` (``replies(500, 500, 200)``: two failures, then success).
  Use it as the far side of any outgoing HTTP call: the CRM's webhooks, Omni's history.

Example::

    with LoopbackReceiver() as receiver, RedisServer() as redis:
        omni = receiver.endpoint(replies(500, 200))
        worker = start_celery_worker(env, log_dir=tmp_path, pool="threads", concurrency=8)
        ...
        omni.wait_for(lambda requests: len(requests) == 2, timeout=10)
        worker.stop()
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import httpx

ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")

# Settings a test process must not inherit from the developer's shell.
_SERVICE_ENV_PREFIXES = ("CRM_", "OMNI_", "CELERY_")
_SERVICE_ENV_NAMES = {"REDIS_URL", "PROMETHEUS_MULTIPROC_DIR"}


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.05,
    message: str | Callable[[], str] = "condition not met",
) -> T:
    """Poll ``condition`` until it returns something truthy (which is returned), or fail
    with ``message`` (a string, or a callable building it, e.g. with process logs)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            text = message() if callable(message) else message
            raise AssertionError(f"after {timeout:g}s: {text}")
        time.sleep(interval)


def service_env(**values: object) -> dict[str, str]:
    """The current environment without service settings, plus ``values`` (stringified;
    ``None`` leaves a name unset)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_SERVICE_ENV_PREFIXES) and key not in _SERVICE_ENV_NAMES
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update({key: str(value) for key, value in values.items() if value is not None})
    return env


class ServiceProcess:
    """A subprocess in its own session (so a kill reaches its children), output to
    ``log_path``. Start it with :meth:`start`; stop it gently or kill it."""

    def __init__(
        self, name: str, command: Sequence[str], env: Mapping[str, str], log_path: Path
    ) -> None:
        self.name = name
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> ServiceProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 40) -> str:
        return f"--- {self.name} ({self.log_path}) ---\n" + "\n".join(
            self.log_text().splitlines()[-lines:]
        )

    def wait_for_log(self, text: str, *, timeout: float, after: int = 0) -> None:
        """Wait until ``text`` appears in the log past character ``after``."""

        def seen() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited early\n{self.tail()}")
            return text in self.log_text()[after:]

        wait_until(seen, timeout=timeout, message=lambda: f"{text!r} not logged\n{self.tail()}")

    def wait_for_http(self, url: str, *, timeout: float) -> None:
        def answers() -> bool:
            if not self.running:
                raise AssertionError(f"{self.name} exited early\n{self.tail()}")
            try:
                return httpx.get(url, timeout=1.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(answers, timeout=timeout, message=lambda: f"{url} not up\n{self.tail()}")

    def _signal_group(self, signum: int) -> None:
        assert self.process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the process and every child: a crash, no chance to clean up."""
        if self.process is None:
            return
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM, then SIGKILL the group (whatever is left) after ``grace`` seconds."""
        if self.process is None:
            return
        if self.process.poll() is None:
            # The main process only: it shuts its children down in order (a Celery worker
            # finishes or requeues its tasks); the group gets SIGKILL below either way.
            self.process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        # Children (pool processes) may outlive their parent's exit: end the group.
        self._signal_group(signal.SIGKILL)
        self.process.wait(timeout=10)


def start_uvicorn(
    app: str,
    env: Mapping[str, str],
    *,
    log_dir: Path,
    name: str = "api",
    timeout: float = 30,
    port: int | None = None,
    extra_args: Sequence[str] = (),
) -> tuple[ServiceProcess, str]:
    """``uvicorn app`` on ``port`` (a free loopback one by default) with the flags an
    operator adds (``extra_args``); returns once ``/healthz`` answers 200."""
    port = port or free_port()
    process = ServiceProcess(
        name,
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *extra_args,
        ],
        env,
        log_dir / f"{name}.log",
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_for_http(f"{url}/healthz", timeout=timeout)
    except BaseException:
        process.stop()
        raise
    return process, url


def start_celery_worker(
    env: Mapping[str, str],
    *,
    log_dir: Path,
    queues: Iterable[str] | None = None,
    name: str = "worker",
    concurrency: int | None = 1,
    pool: str = "prefork",
    beat: bool = False,
    app: str = "crm_service.worker:celery_app",
    timeout: float = 60,
) -> ServiceProcess:
    """``celery -A app worker`` as DESIGN.md §8 starts it: no ``-Q`` unless ``queues`` is
    given (a plain worker consumes every declared queue), with the pool and concurrency an
    operator would pick (None: no ``--concurrency``, the worker's own default), embedded
    beat only if asked (``--beat``; :func:`start_celery_beat`
    is the separate process compose runs). Returns once the worker logged ``ready``."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "worker",
        "--pool",
        pool,
        *(() if concurrency is None else ("--concurrency", str(concurrency))),
        "--loglevel",
        "INFO",
        # Several workers of one test on one host need distinct names (celery@host each).
        "--hostname",
        f"{name}-{os.getpid()}-{next(_names)}@%h",
    ]
    if queues is not None:
        command += ["--queues", ",".join(queues)]
    if beat:
        command += ["--beat", "--schedule", str(log_dir / f"{name}-beat-schedule")]
    log_path = log_dir / f"{name}.log"
    offset = len(log_path.read_text(errors="replace")) if log_path.exists() else 0
    process = ServiceProcess(name, command, env, log_path).start()
    try:
        process.wait_for_log(" ready.", timeout=timeout, after=offset)
    except BaseException:
        process.stop()
        raise
    return process


def start_celery_beat(
    env: Mapping[str, str],
    *,
    log_dir: Path,
    name: str = "beat",
    app: str = "crm_service.worker:celery_app",
    timeout: float = 30,
) -> ServiceProcess:
    """``celery -A app beat``, the process of its own that compose runs; returns once it
    has started its scheduler."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        app,
        "beat",
        "--schedule",
        str(log_dir / f"{name}-schedule"),
        "--loglevel",
        "INFO",
    ]
    log_path = log_dir / f"{name}.log"
    offset = len(log_path.read_text(errors="replace")) if log_path.exists() else 0
    process = ServiceProcess(name, command, env, log_path).start()
    try:
        process.wait_for_log("beat: Starting", timeout=timeout, after=offset)
    except BaseException:
        process.stop()
        raise
    return process


_names = itertools.count(1)


class RedisServer:
    """A private ``redis-server`` on a free loopback port, no persistence. ``stop`` and
    ``start`` again keep the port, so clients configured with :attr:`url` reconnect."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; the end-to-end tests need it")
        self.binary = binary
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> RedisServer:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, timeout=10, message=f"redis-server on {self.port} not up")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


@dataclass(frozen=True)
class Reply:
    """One answer of a :class:`LoopbackReceiver` endpoint; ``delay`` seconds before it is
    sent (a slow or timing-out peer)."""

    status: int = 200
    body: bytes = b'{"status":"ok"}'
    headers: Mapping[str, str] = field(default_factory=dict)
    delay: float = 0.0


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    received_at: float  # time.monotonic()

    @property
    def webhook_id(self) -> str | None:
        return self.headers.get("webhook-id")

    @property
    def key(self) -> str:
        """What :func:`replies` counts by: the webhook id, else method and path."""
        return self.webhook_id or f"{self.method} {self.path}"


# (request, how many requests with the same key came before it) -> the answer
Responder = Callable[[ReceivedRequest, int], Reply]


def replies(*script: Reply | int) -> Responder:
    """Answer the n-th request of each key (webhook id) with ``script[n]``; the last entry
    repeats. ``replies(500, 500, 200)``: fail twice, then accept."""
    answers = [item if isinstance(item, Reply) else Reply(status=item) for item in script]
    if not answers:
        raise ValueError("replies() needs at least one answer")

    def respond(_request: ReceivedRequest, seen_before: int) -> Reply:
        return answers[min(seen_before, len(answers) - 1)]

    return respond


EMPTY_PAGE = Reply(body=b'{"items":[],"offset":1,"limit":100,"total":0}')


class Endpoint:
    """One URL prefix of a :class:`LoopbackReceiver`: its requests and its responder.

    With ``only`` set (a path below the prefix, e.g. ``/webhooks/crm``), only requests to
    that path are recorded and scripted; any other request gets ``others`` (by default an
    empty list page: no chat history) and is not recorded."""

    def __init__(
        self,
        receiver_url: str,
        prefix: str,
        responder: Responder,
        *,
        only: str | None = None,
        others: Reply = EMPTY_PAGE,
    ) -> None:
        self.prefix = prefix
        self.base_url = f"{receiver_url}{prefix}"
        self.only = only
        self.others = others
        self._responder = responder
        self._requests: list[ReceivedRequest] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()

    def respond_with(self, responder: Responder) -> None:
        with self._lock:
            self._responder = responder

    @property
    def requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_to(self, path: str) -> list[ReceivedRequest]:
        """Requests to ``path`` below the prefix (e.g. ``/webhooks/crm``)."""
        return [request for request in self.requests if request.path == path]

    def wait_for(
        self,
        condition: Callable[[list[ReceivedRequest]], T],
        *,
        timeout: float,
        message: str | Callable[[], str] = "",
    ) -> T:
        def describe() -> str:
            extra = message() if callable(message) else message
            seen = [(r.method, r.path, r.webhook_id) for r in self.requests]
            return f"{extra}\nreceived so far: {seen}"

        return wait_until(lambda: condition(self.requests), timeout=timeout, message=describe)

    def _handle(self, request: ReceivedRequest) -> Reply:
        if self.only is not None and request.path != self.only:
            return self.others
        with self._lock:
            seen_before = self._seen[request.key]
            self._seen[request.key] += 1
            self._requests.append(request)
            responder = self._responder
        return responder(request, seen_before)


class _ListeningServer(ThreadingHTTPServer):
    """A listen backlog for a batch of concurrent sends: socketserver's default of 5 let
    the kernel drop the SYNs of a sixth connection while this process (the test's, busy)
    was slow to accept, and a dropped SYN is retried after a second, past the
    webhook timeout the e2e stack runs with."""

    request_queue_size = 128


class LoopbackReceiver:
    """A threaded HTTP/1.1 server on ``127.0.0.1`` (keep-alive, any method). Requests go
    to the endpoint whose prefix starts their path; others get 404."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}
        self._counter = itertools.count(1)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def endpoint(self, responder: Responder | None = None, *, only: str | None = None) -> Endpoint:
        """A new prefix; see :class:`Endpoint` for ``only``."""
        prefix = f"/e{next(self._counter)}"
        endpoint = Endpoint(self.url, prefix, responder or replies(200), only=only)
        self._endpoints[prefix] = endpoint
        return endpoint

    def _route(self, path: str) -> tuple[Endpoint, str] | None:
        prefix, slash, rest = path.partition("/")[2].partition("/")
        endpoint = self._endpoints.get(f"/{prefix}")
        return None if endpoint is None else (endpoint, slash + rest)

    def start(self) -> LoopbackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle on, the second waits for
            # the client's delayed ACK (~40 ms per keep-alive request).
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else b""
                routed = receiver._route(self.path)
                if routed is None:
                    self._answer(Reply(status=404, body=b'{"detail":"no such endpoint"}'))
                    return
                endpoint, path = routed
                request = ReceivedRequest(
                    method=self.command,
                    path=path,
                    headers={key.lower(): value for key, value in self.headers.items()},
                    body=body,
                    received_at=time.monotonic(),
                )
                reply = endpoint._handle(request)
                if reply.delay:
                    time.sleep(reply.delay)
                self._answer(reply)

            def _answer(self, reply: Reply) -> None:
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (its timeout)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # the endpoints record what matters

        self._server = _ListeningServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        self._server = None

    def __enter__(self) -> LoopbackReceiver:
        return self.start()

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _traceback: TracebackType | None,
    ) -> None:
        self.stop()
