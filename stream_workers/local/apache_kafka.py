"""A real Apache Kafka broker (KRaft, one combined broker and controller) for local runs and tests.

    with ApacheKafka() as kafka:          # free ports, a temporary data dir
        print(kafka.bootstrap_servers)

Unlike the embedded broker (Tansu, in memory) this is the broker production runs, with its log on
disk: ``stop()`` then ``start()``, or ``kill()`` then ``start()``, on the same ``data_dir`` keeps
every acknowledged message. A restart reuses the ports of the first start, because the
controller's address is written into the formatted storage and clients keep the bootstrap
address. ``close()`` (and leaving the ``with`` block) stops the broker and removes a data dir
that was created here.

The broker needs a JDK 17+ (``java``). Its jars come from Maven Central: the first start copies
``org.apache.kafka:kafka_2.13:KAFKA_VERSION`` and its runtime dependencies into a cache with
Maven (``mvn``; 45 jars, 43 MB), which later starts use offline. The cache is
``$OUTROUTE_KAFKA_CACHE``, else ``~/.cache/outroute/kafka-KAFKA_VERSION``; a marker written after
a complete copy tells a finished cache from an interrupted one.

Data dir layout: ``server.properties`` (written at every start, holding the ports), ``log/``
(Kafka's ``log.dirs``; formatted once, when it has no ``meta.properties``) and ``kafka.log``
(the broker's output, unless ``log_path`` says otherwise). The JVM dies with the process that
started it, even if that one is killed with SIGKILL; on Linux the signal comes when the *thread*
that started it exits, so start the broker from a thread that lives as long as the broker.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, ClassVar, Final, Self

from stream_workers.errors import LocalStackError
from stream_workers.local.stack import _Child, _port_open, _Service, free_port

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

__all__ = ["KAFKA_VERSION", "ApacheKafka", "kafka_cache_dir", "resolve_kafka_jars"]

#: The Apache Kafka release this launcher runs; the broker image of docker-compose.yml is meant
#: to be the same release.
KAFKA_VERSION: Final = "4.4.0"

_POM: Final = Path(__file__).with_name("apache_kafka_pom.xml")
_LOG4J_CONFIG: Final = Path(__file__).with_name("apache_kafka_log4j2.properties")
_CACHE_ENV: Final = "OUTROUTE_KAFKA_CACHE"
_MARKER: Final = "resolved"
_RESOLVE_TIMEOUT: Final = 900.0
_FORMAT_TIMEOUT: Final = 60.0
_ANSI_ESCAPE: Final = re.compile(r"\x1b\[[0-9;]*m")
_NEEDS: Final = "the Apache Kafka broker needs a JDK 17+ (java) and, to fetch its jars, Maven (mvn)"

# Measured on 2 cores (JDK 17, Kafka 4.4.0), three runs each: a restart on formatted storage takes
# 2.2-3.4 s to a loaded group coordinator with C1 only (TieredStopAtLevel=1), 3.2-6.1 s with C2;
# a first start (format included) 3.9-4.2 s against 4.9-7.7 s. Resident memory is ~155 MiB after
# start and ~165 MiB after 200k messages, the same at -Xmx256m or 512m (it is metaspace, code and
# threads more than heap); the broker starts even at -Xmx48m, given the small cleaner buffer
# below. SerialGC: one small heap, no pause-time goal worth a GC thread per core.
_JVM_FLAGS: Final = (
    "-Xms64m",
    "-Xmx512m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)


def kafka_cache_dir() -> Path:
    """Where the broker's jars are cached: ``$OUTROUTE_KAFKA_CACHE``, else
    ``~/.cache/outroute/kafka-KAFKA_VERSION``."""
    configured = os.environ.get(_CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "outroute" / f"kafka-{KAFKA_VERSION}"


def _fingerprint() -> str:
    """What a complete cache was resolved from: the Kafka version and the pom."""
    digest = hashlib.sha256(_POM.read_bytes()).hexdigest()
    return f"kafka {KAFKA_VERSION} pom sha256 {digest}\n"


def _which(command: str, what: str) -> str:
    path = shutil.which(command)
    if path is None:
        where = "is not an executable" if os.sep in command else "is not on PATH"
        raise LocalStackError(f"{what} was not found ({command!r} {where}): {_NEEDS}")
    return path


def resolve_kafka_jars(cache_dir: Path | None = None, *, mvn: str = "mvn") -> Path:
    """The directory of the broker's jars, copied there with Maven on first use.

    Runs Maven only when ``cache_dir`` (default :func:`kafka_cache_dir`) holds no complete copy
    of this version; concurrent callers wait for each other. Raises LocalStackError when Maven
    is missing or fails (with the tail of its output).
    """
    cache = kafka_cache_dir() if cache_dir is None else cache_dir
    lib = cache / "lib"
    marker = cache / _MARKER
    fingerprint = _fingerprint()
    if _read_text(marker) == fingerprint:
        return lib
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be resolving right now
        if _read_text(marker) == fingerprint:
            return lib
        binary = _which(mvn, "Maven")
        print(
            f"resolving Apache Kafka {KAFKA_VERSION} jars with Maven (once) into {cache} ...",
            file=sys.stderr,
            flush=True,
        )
        began = time.monotonic()
        marker.unlink(missing_ok=True)
        shutil.rmtree(lib, ignore_errors=True)  # what an interrupted copy left
        pom = cache / "pom.xml"
        shutil.copyfile(_POM, pom)
        log = cache / "maven.log"
        log.unlink(missing_ok=True)
        _run(
            "maven",
            [
                binary,
                "-q",
                "-B",
                "-Dstyle.color=never",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={lib}",
                f"-Dkafka.version={KAFKA_VERSION}",
            ],
            log,
            _RESOLVE_TIMEOUT,
            f"Maven could not resolve the Apache Kafka {KAFKA_VERSION} jars",
        )
        jars = sorted(lib.glob("*.jar"))
        if not any(j.name == f"kafka_2.13-{KAFKA_VERSION}.jar" for j in jars):
            raise LocalStackError(f"Maven finished but {lib} has no kafka_2.13-{KAFKA_VERSION}.jar")
        partial = marker.with_suffix(".partial")
        partial.write_text(fingerprint)
        partial.replace(marker)
        print(
            f"resolved {len(jars)} jars in {time.monotonic() - began:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    return lib


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _run(name: str, argv: list[str], log_path: Path, timeout: float, failed: str) -> None:
    """Run ``argv`` to completion as a child that dies with us; LocalStackError if it fails."""
    child = _Child(name, argv, log_path)
    try:
        code = child.process.wait(timeout)
    except subprocess.TimeoutExpired:
        child.stop()
        raise LocalStackError(
            f"{failed}: no result within {timeout:.0f} s; log {child.log_path}:\n{child.log_tail()}"
        ) from None
    except BaseException:
        child.stop()
        raise
    child.stop()
    if code != 0:
        tail = _ANSI_ESCAPE.sub("", child.log_tail())  # Maven colours some lines even with -B
        raise LocalStackError(f"{failed} (exit code {code}); log {child.log_path}:\n{tail}")


def _cluster_id() -> str:
    """A random cluster id as Kafka writes them: 22 characters of URL-safe base64; never with a
    leading '-', which the storage tool would read as an option."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _free_ports(host: str, port: int | None) -> tuple[int, int]:
    """``port`` (or a free one) and a different free port for the controller."""
    port = free_port(host) if port is None else port
    controller_port = free_port(host)
    while controller_port == port:
        controller_port = free_port(host)
    return port, controller_port


# The settings that place the broker (addresses, storage, its role and id): set by the launcher,
# because the ports and the log directory are written into the formatted storage.
_OWNED_SETTINGS: Final = frozenset(
    {
        "process.roles",
        "node.id",
        "controller.quorum.bootstrap.servers",
        "controller.quorum.voters",
        "listeners",
        "advertised.listeners",
        "controller.listener.names",
        "inter.broker.listener.name",
        "listener.security.protocol.map",
        "log.dirs",
        "log.dir",
    }
)


def _server_properties(
    host: str, port: int, controller_port: int, log_dir: Path, config: Mapping[str, str]
) -> str:
    settings = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(log_dir),
        # One broker: every internal topic has one replica and one partition.
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "share.coordinator.state.topic.num.partitions": "1",
        "group.initial.rebalance.delay.ms": "0",
        # After a SIGKILL the restarted controller waits for the old broker session to expire
        # before the broker can register again: 12.7 s to start with the 9 s default, 5.4 s
        # with 3 s. Six heartbeats fit in one session, so a busy machine does not fence it.
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        # outroute creates its topics (and Faust its own) explicitly, as in docker-compose.yml.
        "auto.create.topics.enable": "false",
        # Small: the cleaner's 128 MiB default buffer alone would not fit a small heap.
        "log.cleaner.dedupe.buffer.size": str(2 * 1024 * 1024),
        "num.network.threads": "2",
        "num.io.threads": "2",
        "background.threads": "2",
        "num.recovery.threads.per.data.dir": "1",
        **config,
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _stored_ports(properties: Path) -> tuple[int, int] | None:
    """The PLAINTEXT and CONTROLLER ports in a server.properties written by this launcher."""
    for line in (_read_text(properties) or "").splitlines():
        key, _, value = line.partition("=")
        if key.strip() != "listeners":
            continue
        ports = {
            name: int(address.rpartition(":")[2])
            for name, _, address in (item.partition("://") for item in value.split(","))
        }
        if "PLAINTEXT" in ports and "CONTROLLER" in ports:
            return ports["PLAINTEXT"], ports["CONTROLLER"]
    return None


class ApacheKafka(_Service):
    """Apache Kafka ``KAFKA_VERSION`` in KRaft mode, one node, on ``host`` (loopback).

    ``port=None`` picks a free port on the first start; ``data_dir=None`` uses a temporary
    directory that ``close()`` removes. ``start()`` returns once the broker answers a metadata
    request and its group coordinator has loaded, so consumer groups can join and commit.
    ``log_path`` (default ``data_dir/kafka.log``) receives the broker's output, appended across
    restarts. ``java`` and ``mvn`` are commands on PATH or paths; ``cache_dir`` is where the
    jars are cached (default :func:`kafka_cache_dir`). ``config`` adds broker settings or
    overrides the launcher's (for example ``{"log.retention.ms": "60000"}``); the ones that
    place the broker (listeners, quorum, ``log.dirs``, ``node.id``, roles) are the launcher's
    and refused.
    """

    #: The settings ``config`` may not set: they place the broker.
    OWNED_SETTINGS: ClassVar[frozenset[str]] = _OWNED_SETTINGS

    def __init__(
        self,
        port: int | None = None,
        *,
        host: str = "127.0.0.1",
        data_dir: Path | None = None,
        log_path: Path | None = None,
        cache_dir: Path | None = None,
        java: str = "java",
        mvn: str = "mvn",
        config: Mapping[str, str] | None = None,
    ) -> None:
        owned = sorted(_OWNED_SETTINGS.intersection(config or {}))
        if owned:
            raise ValueError(f"config: {', '.join(owned)} set by the launcher, not by config")
        bad = sorted(k for k, v in (config or {}).items() if "\n" in f"{k}{v}" or "=" in k)
        if bad:
            raise ValueError(f"config: {', '.join(map(repr, bad))} is not a key=value setting")
        self.config = dict(config or {})
        self.host = host
        self.port = port
        self.controller_port: int | None = None
        self._requested_port = port
        self._data_dir = data_dir
        self._log_path = log_path
        self._cache_dir = cache_dir
        self._java = java
        self._mvn = mvn
        self._child: _Child | None = None
        self._remove_data: weakref.finalize[[Path], ApacheKafka] | None = None

    @property
    def bootstrap_servers(self) -> str:
        if self.port is None:
            raise LocalStackError("the Apache Kafka broker has not been started")
        return f"{self.host}:{self.port}"

    @property
    def data_dir(self) -> Path:
        """The broker's storage: the one given, or the temporary one made by the first start."""
        if self._data_dir is None:
            raise LocalStackError("the Apache Kafka broker has not been started")
        return self._data_dir

    @property
    def pid(self) -> int | None:
        return self._child.pid if self._child else None

    @property
    def running(self) -> bool:
        return self._child is not None and self._child.alive()

    def start(self, timeout: float = 60.0) -> Self:
        """Start the broker (formatting ``data_dir`` if it is new). ``timeout`` bounds the
        broker's start, not the one-time download of its jars."""
        if self.running:
            return self
        self.stop()  # a broker that exited on its own: reap it and close its log
        java = _which(self._java, "java")
        lib = resolve_kafka_jars(self._cache_dir, mvn=self._mvn)
        data_dir = self._make_data_dir()
        log_dir = data_dir / "log"
        properties = data_dir / "server.properties"
        formatted = (log_dir / "meta.properties").exists()
        port, controller_port = self._choose_ports(data_dir, formatted)
        self.port, self.controller_port = port, controller_port
        properties.write_text(
            _server_properties(self.host, port, controller_port, log_dir, self.config)
        )
        jvm = [
            java,
            *_JVM_FLAGS,
            "-cp",
            str(lib / "*"),
            f"-Dlog4j2.configurationFile={_LOG4J_CONFIG}",
        ]
        log_path = self._log_path or data_dir / "kafka.log"
        if not formatted:
            cluster = ["--cluster-id", _cluster_id(), "--config", str(properties)]
            _run(
                "kafka-storage",
                [*jvm, "kafka.tools.StorageTool", "format", "--standalone", *cluster],
                log_path,
                _FORMAT_TIMEOUT,
                f"could not format the Kafka storage in {log_dir}",
            )
        self._child = _Child("kafka", [*jvm, "kafka.Kafka", str(properties)], log_path)
        try:
            self._wait_until_ready(self._child, port, timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _choose_ports(self, data_dir: Path, formatted: bool) -> tuple[int, int]:
        """The ports of the first start on this storage, or new free ones for new storage."""
        properties = data_dir / "server.properties"
        stored = _stored_ports(properties) if formatted else None
        if formatted and stored is None:
            raise LocalStackError(
                f"{data_dir / 'log'} was formatted, but not by this launcher ({properties} "
                "names no PLAINTEXT and CONTROLLER listeners); use an empty data_dir"
            )
        if stored is not None:  # the controller's address is in the storage: keep it
            ports = (self.port or stored[0], stored[1])
        elif self.port is not None and self.controller_port is not None:
            ports = (self.port, self.controller_port)
        else:
            ports = _free_ports(self.host, self.port)
        for port in ports:
            if _port_open(self.host, port):
                raise LocalStackError(
                    f"port {self.host}:{port} is already in use; the broker on {data_dir} "
                    "needs it (its ports are fixed when its storage is formatted)"
                )
        return ports

    def _make_data_dir(self) -> Path:
        if self._data_dir is None:
            path = Path(tempfile.mkdtemp(prefix="outroute-kafka-"))
            self._remove_data = weakref.finalize(self, _remove_tree, path)
            self._data_dir = path
        self._data_dir.mkdir(parents=True, exist_ok=True)
        return self._data_dir

    def _wait_until_ready(self, child: _Child, port: int, timeout: float) -> None:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + timeout
        admins: list[AdminClient] = []  # one client for every probe, made once the port opens

        def admin() -> AdminClient | None:
            if not admins and _port_open(self.host, port):
                servers = f"{self.host}:{port}"
                admins.append(AdminClient({"bootstrap.servers": servers, "log_level": 0}))
            return admins[0] if admins else None

        def answers_metadata() -> bool:
            client = admin()
            if client is None:
                return False
            try:
                client.list_topics(timeout=2)
            except KafkaException:
                return False
            return True

        def coordinator_loaded() -> bool:
            # Right after start (and after a restart, while __consumer_offsets is read back) the
            # coordinator answers COORDINATOR_LOAD_IN_PROGRESS; the first describe also makes
            # the broker create __consumer_offsets.
            client = admin()
            if client is None:
                return False
            future = client.describe_consumer_groups(["outroute-readiness"], request_timeout=2)
            try:
                future["outroute-readiness"].result()
            except KafkaException:
                return False
            return True

        child.wait_until(answers_metadata, timeout, "answer a metadata request")
        remaining = max(1.0, deadline - time.monotonic())
        child.wait_until(coordinator_loaded, remaining, "load its group coordinator")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a controlled shutdown, 0.5-2.5 s), then SIGKILL after ``timeout``; idempotent.
        The data dir and the ports are kept for the next ``start()``."""
        if self._child is not None:
            self._child.stop(timeout)
            self._child = None

    def kill(self) -> None:
        """SIGKILL the broker, as a crash would; ``start()`` recovers from its data dir."""
        if self._child is not None:
            if self._child.alive():
                self._child.process.kill()
                self._child.process.wait(10)
            self._child.stop()
            self._child = None

    def close(self, timeout: float = 15.0) -> None:
        """Stop the broker and remove its data dir if it was created here."""
        self.stop(timeout)
        if self._remove_data is not None:
            self._remove_data()
            self._remove_data = None
            self._data_dir = None
            self.port = self._requested_port
            self.controller_port = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"ApacheKafka({self.host}:{self.port}, {self._data_dir}, {state})"
