"""The demo receiver of docker-compose.yml: an HTTP endpoint that accepts every delivery, prints it
(`docker compose logs receiver`) and lists what it received at GET /received, so the demo can
check that its event arrived. Standard library only: it runs in the plain Python image."""

from __future__ import annotations

import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MAX_BODY = 1024 * 1024
received: list[dict] = []
lock = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 - http.server's naming
        length = min(int(self.headers.get("content-length") or 0), MAX_BODY)
        body = self.rfile.read(length).decode("utf-8", "replace")
        try:
            event = json.loads(body)
        except ValueError:
            event = {"raw": body}
        entry = {"path": self.path, "webhook_id": self.headers.get("webhook-id"), "event": event}
        with lock:
            received.append(entry)
        print(f"received {self.path}: {json.dumps(event)[:500]}", flush=True)
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_GET(self):  # noqa: N802
        if self.path != "/received":
            self.send_response(404)
            self.send_header("content-length", "0")
            self.end_headers()
            return
        with lock:
            payload = json.dumps(received).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass  # each delivery is printed above, once


def main() -> None:
    host = os.environ.get("RECEIVER_HOST", "0.0.0.0")
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("RECEIVER_PORT", "9100"))
    server = ThreadingHTTPServer((host, port), Handler)
    print(f"demo receiver listening on {host}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
