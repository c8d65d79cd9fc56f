"""The Apache Kafka launcher: a real broker whose log survives stop, SIGKILL and restart.

One broker serves the module (each start costs seconds); tests that stop or kill it start it
again before they return, and its fixture restarts it if a test failed half-way.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.cimpl import NewTopic

from stream_workers import KAFKA_VERSION, ApacheKafka, LocalStackError
from stream_workers.local.apache_kafka import resolve_kafka_jars
from stream_workers.local.stack import _port_open

from _support import read_topic, wait_until

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.kafka_only


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


@pytest.fixture(scope="module")
def broker() -> Iterator[ApacheKafka]:
    with ApacheKafka() as kafka:
        yield kafka


@pytest.fixture
def kafka(broker: ApacheKafka) -> ApacheKafka:
    """The module's broker, running (a test that stopped it and then failed left it down)."""
    return broker.start()


def create_topic(kafka: ApacheKafka, topic: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(10)


def produce(kafka: ApacheKafka, topic: str, values: list[bytes]) -> None:
    """Every value written and acknowledged by the broker (acks=all) when this returns."""
    producer = Producer(
        {"bootstrap.servers": kafka.bootstrap_servers, "acks": "all", "linger.ms": 5}
    )
    for value in values:
        producer.produce(topic, value)
    assert producer.flush(10) == 0


def values_of(kafka: ApacheKafka, topic: str, count: int) -> list[bytes]:
    messages = read_topic(kafka.bootstrap_servers, topic, until=lambda m: len(m) >= count)
    return [m.value() or b"" for m in messages]


def test_broker_answers_and_a_message_goes_through(kafka: ApacheKafka, prefix: str) -> None:
    assert kafka.running
    assert kafka.bootstrap_servers == f"127.0.0.1:{kafka.port}"
    assert (kafka.data_dir / "log" / "meta.properties").exists()
    topic = f"{prefix}.hello"
    create_topic(kafka, topic)
    produce(kafka, topic, [b"hello"])
    assert values_of(kafka, topic, 1) == [b"hello"]


def test_stop_then_start_keeps_the_log_the_ports_and_the_offsets(
    kafka: ApacheKafka, prefix: str
) -> None:
    topic = f"{prefix}.durable"
    create_topic(kafka, topic)
    sent = [f"m{i}".encode() for i in range(100)]
    produce(kafka, topic, sent)
    group = {"bootstrap.servers": kafka.bootstrap_servers, "group.id": f"{prefix}-group"}
    committer = Consumer(group)
    committer.commit(offsets=[TopicPartition(topic, 0, 40)], asynchronous=False)
    committer.close()
    servers, controller_port, pid = kafka.bootstrap_servers, kafka.controller_port, kafka.pid
    assert pid is not None
    assert kafka.port is not None

    kafka.stop()
    assert not kafka.running
    assert process_gone(pid)
    assert not _port_open(kafka.host, kafka.port)
    kafka.start()

    assert (kafka.bootstrap_servers, kafka.controller_port) == (servers, controller_port)
    assert values_of(kafka, topic, len(sent)) == sent
    # start() waited for the group coordinator to read __consumer_offsets back.
    reader = Consumer(group)
    try:
        committed = reader.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        reader.close()
    assert [tp.offset for tp in committed] == [40]


def test_kill_then_start_keeps_every_acknowledged_message(kafka: ApacheKafka, prefix: str) -> None:
    topic = f"{prefix}.crash"
    create_topic(kafka, topic, partitions=2)
    sent = [f"k{i}".encode() for i in range(500)]
    produce(kafka, topic, sent)  # acknowledged: in the broker's page cache, not yet fsynced
    pid = kafka.pid
    assert pid is not None

    kafka.kill()
    assert not kafka.running
    assert process_gone(pid)
    kafka.start()

    assert sorted(values_of(kafka, topic, len(sent))) == sorted(sent)


def test_aiokafka_consumer_group_joins_and_commits(kafka: ApacheKafka, prefix: str) -> None:
    """The workers' client (aiokafka, under Faust) speaks the classic group protocol."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTopicPartition

    topic = f"{prefix}.aio"
    create_topic(kafka, topic, partitions=2)
    produce(kafka, topic, [f"a{i}".encode() for i in range(20)])

    async def consume_and_commit() -> list[int]:
        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=kafka.bootstrap_servers,
            group_id=f"{prefix}-aio",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=1_000,
        )
        await consumer.start()
        try:
            seen = 0
            while seen < 20:
                batches = await consumer.getmany(timeout_ms=200)
                seen += sum(len(batch) for batch in batches.values())
            await consumer.commit()
            return [await consumer.committed(AioTopicPartition(topic, p)) for p in (0, 1)]
        finally:
            await consumer.stop()

    committed = asyncio.run(asyncio.wait_for(consume_and_commit(), timeout=60))
    assert sum(committed) == 20


def test_broker_dies_with_the_process_that_started_it_and_its_data_dir_outlives_both(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "data"
    started = tmp_path / "started"
    code = textwrap.dedent(
        f"""
        import threading
        from pathlib import Path
        from confluent_kafka import Producer
        from confluent_kafka.admin import AdminClient
        from confluent_kafka.cimpl import NewTopic
        from stream_workers import ApacheKafka
        kafka = ApacheKafka(data_dir=Path({str(data_dir)!r})).start()
        config = {{"bootstrap.servers": kafka.bootstrap_servers}}
        admin = AdminClient(config)
        admin.create_topics([NewTopic("kept", 1, 1)])["kept"].result(10)
        producer = Producer(config)
        producer.produce("kept", b"before the parent died")
        assert producer.flush(10) == 0
        Path({str(started)!r}).write_text(f"{{kafka.pid}} {{kafka.bootstrap_servers}}")
        threading.Event().wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
    try:
        wait_until(
            lambda: started.exists() or parent.poll() is not None,
            timeout=120,
            what="the broker to start in the child process",
        )
        assert parent.poll() is None, "the child process exited before its broker started"
        pid, servers = started.read_text().split()
        java = int(pid)
        assert not process_gone(java)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(10)
        wait_until(lambda: process_gone(java), timeout=30, what="the orphaned broker to exit")
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)

    # A new launcher on the same data dir: the same ports, the same log.
    with ApacheKafka(data_dir=data_dir) as again:
        assert again.bootstrap_servers == servers
        assert values_of(again, "kept", 1) == [b"before the parent died"]
    assert (data_dir / "log" / "meta.properties").exists()  # given, so not removed


def compose_broker_settings() -> dict[str, str]:
    """docker-compose.yml's broker settings as the apache/kafka image renders them: KAFKA_ and
    the rest of the name lower-cased, ``___`` for ``_``, ``__`` for ``-``, ``_`` for ``.``."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings = {}
    for name, value in compose["services"]["kafka"]["environment"].items():
        if name.startswith("KAFKA_"):
            key = name.removeprefix("KAFKA_").lower()
            key = key.replace("___", "\0").replace("__", "-").replace("_", ".")
            settings[key.replace("\0", "_")] = str(value)
    return settings


def test_compose_broker_settings_are_kafka_settings_with_those_values() -> None:
    # The address and storage settings are checked against each other in
    # tests/unit/test_project.py; these are the rest, on the release the image runs.
    compose = compose_broker_settings()
    tunables = {k: v for k, v in compose.items() if k not in ApacheKafka.OWNED_SETTINGS}
    assert "auto.create.topics.enable" in tunables
    # Kafka keeps a setting it does not know and describes it without a value, as it describes
    # a secret: the check must tell it from a real one.
    unknown = "outroute.not.a.kafka.setting"
    with ApacheKafka(config={**tunables, unknown: "1"}) as kafka:
        kafka.start()
        admin = AdminClient({"bootstrap.servers": kafka.bootstrap_servers})
        resource = ConfigResource("BROKER", "1")
        entries = admin.describe_configs([resource])[resource].result(10)
    assert entries[unknown].value is None
    assert {k: entries[k].value if k in entries else None for k in tunables} == tunables
    with pytest.raises(ValueError, match=r"log\.dirs set by the launcher"):
        ApacheKafka(config={"log.dirs": compose["log.dirs"]})
    with pytest.raises(ValueError, match=r"'a=b' is not a key=value setting"):
        ApacheKafka(config={"a=b": "1"})
    with pytest.raises(ValueError, match=r"'log.retention.ms' is not a key=value setting"):
        ApacheKafka(config={"log.retention.ms": "1\nlog.dirs=/tmp"})


def test_missing_java_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no java (and no mvn) on it
    with pytest.raises(LocalStackError, match=r"java was not found .*needs a JDK 17\+"):
        ApacheKafka().start()


def test_a_failed_format_is_explained_and_close_removes_the_temporary_data_dir() -> None:
    kafka = ApacheKafka(java="/bin/false")  # found, but "formats" with exit code 1
    with pytest.raises(LocalStackError, match=r"could not format the Kafka storage.*exit code 1"):
        kafka.start()
    data_dir = kafka.data_dir
    assert data_dir.is_dir()
    kafka.close()
    assert not data_dir.exists()
    with pytest.raises(LocalStackError, match="has not been started"):
        _ = kafka.data_dir


def test_a_given_data_dir_is_kept_by_close(tmp_path: Path) -> None:
    kafka = ApacheKafka(data_dir=tmp_path / "data", java="/bin/false")
    with pytest.raises(LocalStackError, match="could not format"):
        kafka.start()
    kafka.close()
    assert kafka.data_dir == tmp_path / "data"
    assert (tmp_path / "data" / "server.properties").exists()


def fake_maven(path: Path, exit_code: int) -> str:
    """A stand-in for mvn that copies one jar (or a partial one first) and exits."""
    path.write_text(
        textwrap.dedent(
            f"""\
            #!/bin/sh
            for arg in "$@"; do
              case "$arg" in -DoutputDirectory=*) out="${{arg#-DoutputDirectory=}}";; esac
            done
            mkdir -p "$out"
            if [ {exit_code} -ne 0 ]; then
              touch "$out/partial.jar"
              echo "[ERROR] Failed to execute goal: Could not transfer artifact (network down)"
              exit {exit_code}
            fi
            touch "$out/kafka_2.13-{KAFKA_VERSION}.jar"
            """
        )
    )
    path.chmod(0o755)
    return str(path)


def test_jar_cache_is_resolved_once_and_an_interrupted_copy_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(LocalStackError, match=r"Maven could not resolve(.|\n)*network down"):
        resolve_kafka_jars(cache, mvn=fake_maven(tmp_path / "mvn-fails", 1))
    assert (cache / "lib" / "partial.jar").exists()
    assert not (cache / "resolved").exists()
    assert (
        f"resolving Apache Kafka {KAFKA_VERSION} jars with Maven (once)" in capsys.readouterr().err
    )

    lib = resolve_kafka_jars(cache, mvn=fake_maven(tmp_path / "mvn-works", 0))
    assert sorted(p.name for p in lib.iterdir()) == [f"kafka_2.13-{KAFKA_VERSION}.jar"]
    assert (cache / "resolved").exists()

    # Complete: used offline, Maven is not needed any more.
    assert resolve_kafka_jars(cache, mvn=str(tmp_path / "no-such-mvn")) == lib


def test_missing_maven_is_explained_when_the_cache_is_empty(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match=r"Maven was not found .*needs a JDK 17\+"):
        resolve_kafka_jars(tmp_path / "cache", mvn="no-such-mvn")
