"""A small deterministic chat-completions server on 127.0.0.1 for the judge tests.

It speaks the OpenAI protocol (``POST /v1/chat/completions`` -> ``{"choices": [{"message":
{"content": ...}}]}``) over real HTTP from a thread of the test process. Its verdict is
deterministic: it reads the ground truth and prediction out of the judge's prompt and answers
"Yes." when the normalised prediction equals the ground truth or is listed as its synonym,
else "No.". Tests can script failures per request (``script``: ``"500"``, ``"429"``,
``"drop"`` a connection, ``"slow"`` past the client's timeout), require a key, and read every
request it received (``requests``).
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_PAIR = re.compile(r"Ground truth: (?P<gt>.*)\nPrediction: (?P<pred>.*)\n")


def _norm(text: str) -> str:
    return text.strip().lower().rstrip(".").strip()


class ChatServer:
    """The server; a context manager that starts it on enter and stops it on exit.

    Args:
        port: TCP port on 127.0.0.1 (0: the kernel picks a free one; read ``port`` after).
        synonyms: ground truth -> predictions that mean the same (lower-case).
        key: when set, requests must carry ``Authorization: Bearer KEY`` (else 401).
        script: behaviours of the first requests, in order (then normal answers).
        slow_seconds: how long a ``"slow"`` request sleeps before answering.
        reply: when set, every answer is this text instead of the verdict.
    """

    def __init__(self, *, port: int = 0, synonyms: dict[str, set[str]] | None = None,
                 key: str | None = None, script: list[str] | None = None,
                 slow_seconds: float = 2.0, reply: str | None = None) -> None:
        self.synonyms: dict[str, set[str]] = {}
        for k, v in (synonyms or {}).items():
            self.synonyms.setdefault(_norm(k), set()).update(_norm(x) for x in v)
        self.key = key
        self.script = list(script or [])
        self.slow_seconds = slow_seconds
        self.reply = reply
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                server.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def verdict(self, ground_truth: str, prediction: str) -> str:
        """Return the deterministic answer for one pair."""
        gt, pred = _norm(ground_truth), _norm(prediction)
        return "Yes." if pred == gt or pred in self.synonyms.get(gt, ()) else "No."

    def handle(self, h: BaseHTTPRequestHandler, body: bytes) -> None:
        """Answer one request as the script and the verdict rule say."""
        with self.lock:
            action = self.script.pop(0) if self.script else "ok"
            self.requests.append({"path": h.path, "auth": h.headers.get("Authorization"),
                                  "body": body.decode("utf-8", "replace"), "action": action})
        if action == "drop":
            h.close_connection = True
            h.connection.shutdown(2)
            return
        if action in ("500", "429", "400"):
            h.send_response(int(action))
            if action == "429":
                h.send_header("Retry-After", "0")
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(json.dumps({"error": {"message": f"scripted {action}"}}).encode())
            return
        if action == "slow":
            time.sleep(self.slow_seconds)
        if self.key is not None and h.headers.get("Authorization") != f"Bearer {self.key}":
            h.send_response(401)
            h.send_header("Content-Type", "application/json")
            h.end_headers()
            h.wfile.write(b'{"error": {"message": "Incorrect API key provided"}}')
            return
        req = json.loads(body)
        user = next(m["content"] for m in req["messages"] if m["role"] == "user")
        m = _PAIR.search(user)
        content = self.reply if self.reply is not None else (
            self.verdict(m["gt"], m["pred"]) if m else "I cannot tell.")
        answer = {"id": "chatcmpl-test", "object": "chat.completion", "created": 0,
                  "model": req.get("model"),
                  "choices": [{"index": 0, "finish_reason": "stop",
                               "message": {"role": "assistant", "content": content}}],
                  "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}
        data = json.dumps(answer).encode()
        try:
            h.send_response(200)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def answered(self) -> int:
        """Requests answered normally (not scripted failures)."""
        with self.lock:
            return sum(1 for r in self.requests if r["action"] in ("ok", "slow"))

    def __enter__(self) -> ChatServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
