"""A router that never answers in time: the stand-in for a canary whose model is slow (no model can
be that slow on purpose here). A real HTTP server on 127.0.0.1; it holds every request until
`release()`, its own exit, or `delay_s` (a model that takes that long per answer), and counts what it
got and answered."""

from __future__ import annotations

import http.server
import json
import threading
from typing import Any


class SlowRouter:
    def __init__(self, delay_s: float | None = None) -> None:
        self.requests = 0
        self.answered = 0
        self.revisions: set[str] = set()
        self._released = threading.Event()
        self._count = threading.Lock()
        router = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                self.rfile.read(length)
                with router._count:
                    router.requests += 1
                    router.revisions.add(self.headers.get("x-slm-revision") or "")
                router._released.wait(delay_s)
                chunk = json.dumps({"choices": [{"text": "late"}]})
                body = f"data: {chunk}\n\ndata: [DONE]\n\n".encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "text/event-stream")
                    self.send_header("content-length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    return  # the client gave up
                with router._count:
                    router.answered += 1

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="slow-router", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def release(self) -> None:
        self._released.set()

    def __enter__(self) -> SlowRouter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
        self._server.shutdown()
        self._server.server_close()
