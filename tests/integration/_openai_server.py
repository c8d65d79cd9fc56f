"""A real OpenAI-compatible HTTP server on loopback whose behaviour the model name selects.

HTTP/1.1 with keep-alive, as providers serve it; streamed answers are server-sent events in
chunked transfer encoding. Models:

- any other name: a 200 answer "hi from <model>" (12 prompt and 5 completion tokens)
- ``useless``: a 200 answer whose text is useless ("I cannot help with that.")
- ``ratelimited`` 429, ``broken`` 500, ``unauthorized`` 401
- ``garbage`` (200, not JSON), ``nochoices`` (200, no choices)
- ``slow``: answers after ``SLOW_SECONDS``
- ``flaky``: answers the first turn, 500 once the conversation has more than one message
- streamed: any model streams "hi", " from", " <model>" then usage and ``[DONE]``;
  ``cutter`` drops the connection after two chunks, ``staller`` stops sending after one,
  ``erring`` sends an error event after one chunk.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SLOW_SECONDS = 1.0
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def answer(model: str, text: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": f"{model}-2026",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: OpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
        return

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body}
        )
        model = self.server.behaviours.get(body["model"], body["model"])
        if model == "slow":
            time.sleep(SLOW_SECONDS)
        if body.get("stream") is True and model not in ("ratelimited", "broken"):
            self._stream(model)
            return
        status, payload = {
            "ratelimited": (429, {"error": {"message": "slow down"}}),
            "broken": (500, {"error": {"message": "upstream exploded"}}),
            "unauthorized": (401, {"error": {"message": "bad key"}}),
            "garbage": (200, "this is not json"),
            "nochoices": (200, {"id": "x", "choices": []}),
            "useless": (200, answer(model, "I cannot help with that.")),
        }.get(model, (200, answer(model, f"hi from {model}")))
        if model == "flaky" and len(body["messages"]) > 1:
            status, payload = 500, {"error": {"message": "second turns break me"}}
        data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _chunk(self, event: dict[str, Any] | str) -> None:
        data = event if isinstance(event, str) else json.dumps(event)
        line = f"data: {data}\n\n".encode()
        self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
        self.wfile.flush()

    def _stream(self, model: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        pieces = ["hi", " from", f" {model}"]
        for i, piece in enumerate(pieces):
            if model == "staller" and i == 1:
                self.server.release.wait(10)  # until the test is over
                self.close_connection = True
                return
            if model == "erring" and i == 1:
                self._chunk({"error": {"message": "overloaded mid-answer"}})
                break
            if model == "cutter" and i == 2:
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            self._chunk({"id": "c1", "model": f"{model}-2026", "choices": [choice]})
        else:
            done = {"index": 0, "delta": {}, "finish_reason": "stop"}
            self._chunk({"id": "c1", "model": f"{model}-2026", "choices": [done]})
            self._chunk({"id": "c1", "model": f"{model}-2026", "choices": [], "usage": USAGE})
        self._chunk("[DONE]")
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


class OpenAIServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.requests: list[dict[str, Any]] = []
        #: model name -> the behaviour it gets (e.g. {"gpt-4o": "ratelimited"})
        self.behaviours: dict[str, str] = {}
        self.release = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@contextmanager
def openai_server() -> Iterator[OpenAIServer]:
    server = OpenAIServer()
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="openai-server", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.release.set()
        server.shutdown()
        server.server_close()
