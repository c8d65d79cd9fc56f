"""The project's promises to a newcomer: README commands, CLI help, public names, compose file."""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import producer_sdk
import schemas
import stream_workers
import stream_workers.dashboard
import stream_workers.local
import stream_workers.ops
import stream_workers.ops.backfill
import stream_workers.pipeline
import stream_workers.pipeline.join
import stream_workers.pipeline.posterior
import stream_workers.pipeline.posterior.detectors
from schemas import DecisionEvent, OutcomeEvent
from stream_workers.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*):", text, flags=re.MULTILINE))


def test_readme_names_exactly_the_two_make_commands_and_they_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    named = re.findall(r"^make (\S+)", readme, flags=re.MULTILINE)
    assert named == ["demo", "test"]
    assert {"demo", "test"} <= make_targets()


def test_make_targets_do_what_the_readme_says() -> None:
    makefile = (ROOT / "Makefile").read_text()
    demo = re.search(r"^demo:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, flags=re.MULTILINE)
    assert demo
    assert "outroute demo" in demo.group(1)
    assert test
    for step in ("ruff check", "ruff format --check", "mypy", "pytest"):
        assert step in test.group(1)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def _assert_all_is_sorted_and_real(module: Any) -> None:
    names = module.__all__
    assert list(names) == sorted(names, key=lambda n: (not n.isupper(), n))
    for name in names:
        assert hasattr(module, name), f"{module.__name__}.{name} is exported but missing"


PACKAGES = [schemas, producer_sdk, stream_workers, stream_workers.local, stream_workers.ops]
PACKAGES += [stream_workers.pipeline, stream_workers.ops.backfill, stream_workers.pipeline.join]
PACKAGES += [stream_workers.pipeline.posterior, stream_workers.pipeline.posterior.detectors]
PACKAGES += [stream_workers.dashboard]


@pytest.mark.parametrize("module", PACKAGES, ids=lambda m: m.__name__)
def test_public_names(module: Any) -> None:
    _assert_all_is_sorted_and_real(module)


def test_no_module_outgrows_one_concept() -> None:
    """A module past ~500 lines is split by concept (the layout in docs/architecture.md)."""
    sizes = {
        path.relative_to(ROOT): len(path.read_text().splitlines())
        for package in ("schemas", "producer_sdk", "stream_workers", "bench")
        for path in (ROOT / package).rglob("*.py")
    }
    assert {path: n for path, n in sizes.items() if n > 520} == {}


COMMANDS = [[], ["demo"], ["topics"], ["topics", "create"], ["topics", "describe"], ["schemas"]]
COMMANDS += [["schemas", "export"], ["worker"], ["alerts"], ["alerts", "tail"]]
COMMANDS += [["alerts", "forward"], ["backfill"], ["policy"], ["goals"]]
COMMANDS += [["dashboard"]]
COMMANDS += [["path"], ["path", "disable"], ["path", "enable"], ["goal"], ["goal", "pin"]]
COMMANDS += [["goal", "unpin"], ["overrides"]]


def _commands(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _commands(command, (*path, name))


def test_each_command_group_module_adds_exactly_the_listed_commands() -> None:
    """The parser has the commands COMMANDS lists, no more, each run by its group's module
    (``goals`` lives with ``policy``, ``path`` and ``goal`` with ``overrides``)."""
    commands = dict(_commands(build_parser()))
    assert set(commands) == {tuple(c) for c in COMMANDS}
    for path, parser in commands.items():
        func = parser.get_default("func")
        if func is not None:
            group = {"goals": "policy", "path": "overrides", "goal": "overrides"}.get(
                path[0], path[0]
            )
            assert func.__module__ == f"stream_workers.cli.{group}", path


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "outroute")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([*command, "--help"])
    assert info.value.code == 0
    assert "usage: outroute" in capsys.readouterr().out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["backfill", "rows.jsonl", "--rate", "0"], "argument --rate: must be > 0, got 0"),
        (["backfill", "rows.jsonl", "--workers", "0"], "argument --workers: must be >= 1, got 0"),
        (["backfill", "rows.jsonl", "--workers", "2.5"], "expected a whole number, got '2.5'"),
        (["demo", "--requests", "10"], "argument --requests: must be >= 30, got 10"),
        (["demo", "--speed", "-1"], "argument --speed: must be > 0, got -1"),
        (["demo", "--speed", "nan"], "expected a finite number, got 'nan'"),
        (["demo", "--broker-port", "0"], "argument --broker-port: must be >= 1, got 0"),
        (["demo", "--stack-only", "--duration", "-1"], "argument --duration: must be > 0"),
        (["topics", "create", "--timeout", "0"], "argument --timeout: must be > 0, got 0"),
        (["topics", "create", "--partitions", "x"], "expected a whole number, got 'x'"),
        (["worker", "--metrics-port", "70000"], "must be <= 65535, got 70000"),
        (["alerts", "forward", "--webhook", "http://h/", "--http-timeout", "0"], "must be > 0"),
    ],
)
def test_out_of_range_flags_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_setting_is_one_line_and_exit_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OUTROUTE_PARTITIONS", "many")
    assert main(["topics", "describe"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("outroute: error: invalid settings: partitions:")


def test_schemas_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schemas", "export", str(tmp_path / "out"), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    files = sorted(Path(line["schema"]).name for line in lines)
    assert files == [
        "DecisionEvent.schema.json",
        "DegradationAlert.schema.json",
        "GoalOverrides.schema.json",
        "OutcomeEvent.schema.json",
        "OverrideRecord.schema.json",
        "PolicySnapshot.schema.json",
    ]
    for model in (DecisionEvent, OutcomeEvent):
        schema = json.loads((tmp_path / "out" / f"{model.__name__}.schema.json").read_text())
        assert schema["$schema"].endswith("2020-12/schema")
        assert schema["additionalProperties"] is False
        assert set(schema["properties"]) == set(model.model_fields)
    decision = json.loads((tmp_path / "out" / "DecisionEvent.schema.json").read_text())
    trace = decision["properties"]["trace_id"]
    assert (trace["minLength"], trace["maxLength"]) == (1, 128)
    assert trace["pattern"] == schemas._types.IDENTIFIER_PATTERN
    assert set(decision["required"]) >= {"event_id", "trace_id", "goal", "path", "decided_at"}


def test_compose_services_run_real_commands_with_real_settings() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    settings_vars = {
        f"OUTROUTE_{name.upper()}" for name in stream_workers.WorkerSettings.model_fields
    }
    parser = build_parser()
    commands: set[str] = set()
    for name, service in compose["services"].items():
        env = service.get("environment", {})
        for var in env:
            if var.startswith("OUTROUTE_"):
                assert var in settings_vars, f"{name}: {var} is not a setting"
        if service.get("build") or str(service.get("image", "")).startswith("outroute"):
            args = parser.parse_args(service["command"])  # exits on an unknown command
            assert callable(args.func)
            commands.add(" ".join(service["command"][:2]))
    assert {"topics create", "worker", "alerts forward"} <= commands


def test_compose_broker_is_the_tested_release_and_its_addresses_agree() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{stream_workers.KAFKA_VERSION}"
    env = {k: str(v) for k, v in kafka["environment"].items()}
    # The image formats its storage only given a cluster id: 16 bytes, base64url, unpadded.
    assert len(base64.urlsafe_b64decode(env["CLUSTER_ID"] + "==")) == 16
    assert "=" not in env["CLUSTER_ID"]
    # The log is on the volume, not in the container's /tmp.
    volumes = [v.split(":")[1] for v in kafka["volumes"]]
    assert env["KAFKA_LOG_DIRS"] in volumes
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    bootstrap = compose["x-outroute-env"]["OUTROUTE_BOOTSTRAP_SERVERS"]
    assert advertised == {"PLAINTEXT": bootstrap}
    assert listeners["PLAINTEXT"] == ":" + bootstrap.split(":")[1]
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    voter_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert voter_id == env["KAFKA_NODE_ID"]
    assert voter == "kafka" + listeners[env["KAFKA_CONTROLLER_LISTENER_NAMES"]]
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    health = " ".join(kafka["healthcheck"]["test"])
    assert f"--bootstrap-server localhost{listeners['PLAINTEXT']}" in health
    redis_url = compose["x-outroute-env"]["OUTROUTE_REDIS_URL"]
    assert redis_url.startswith("redis://redis:6379/")
    assert "--appendonly" in services["redis"]["command"]


def collected_integration_tests(brokers: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "OUTROUTE_TEST_BROKERS"}
    if brokers is not None:
        env["OUTROUTE_TEST_BROKERS"] = brokers
    argv = [sys.executable, "-m", "pytest", "tests/integration", "--collect-only", "-q"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 5), done.stdout + done.stderr
    return [line for line in done.stdout.splitlines() if "::" in line]


def test_readme_broker_selection_leaves_kafka_out() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "`OUTROUTE_TEST_BROKERS=embedded` leaves Kafka out" in readme
    every = collected_integration_tests(None)
    embedded = collected_integration_tests("embedded")
    twins = [t for t in every if t.endswith("[kafka]")]
    assert twins, "no test runs on both brokers by default"
    assert {t.removesuffix("[kafka]") + "[embedded]" for t in twins} <= set(embedded)
    assert not [t for t in embedded if t.endswith("[kafka]")]
    left_out = set(every) - set(embedded)
    assert set(embedded) <= set(every)
    assert {t.split("::")[0] for t in left_out - set(twins)} >= {
        "tests/integration/test_apache_kafka.py",
        "tests/integration/test_kafka_durability.py",
    }


def test_readme_sdk_example_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    from producer_sdk import Router
    from producer_sdk.testing import InMemorySink, StaticSnapshotSource

    readme = (ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, flags=re.DOTALL)
    assert example is not None
    sink = InMemorySink()

    class LocalRouter(Router):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(
                *args, event_sink=sink, snapshot_source=StaticSnapshotSource(None), **kwargs
            )

    monkeypatch.setattr(producer_sdk, "Router", LocalRouter)
    namespace = {
        "call_model": lambda path, prompt: f"{path}: {prompt}",
        "is_good": lambda text: bool(text),
        "prompt": "hello",
    }
    exec(compile(example.group(1), "README.md", "exec"), namespace)
    assert len(sink.decisions) == 1
    assert len(sink.outcomes) == 1
    assert sink.outcomes[0].success is True


def test_test_modules_have_unique_names() -> None:
    """pytest imports test modules by basename (tests/ has no packages): two of one name stop
    the whole collection."""
    names = [path.name for path in (ROOT / "tests").rglob("test_*.py")]
    assert sorted({n for n in names if names.count(n) > 1}) == []
