"""A stand-in for the Hugging Face Hub on 127.0.0.1: ``GET``/``HEAD /<org>/<repo>/resolve/<rev>/<file>``
answer with the file under ``root/<org>/<repo>/<file>`` and the headers ``huggingface_hub`` reads
(``ETag``, ``X-Repo-Commit``, ``Content-Length``); anything else is a 404 ``EntryNotFound``. Point a
subprocess at it with ``HF_ENDPOINT`` (huggingface_hub reads it when imported)."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import threading
from pathlib import Path


def _handler(root: Path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def _answer(self) -> bytes | None:
            parts = self.path.split("?")[0].strip("/").split("/")
            f = (
                root / parts[0] / parts[1] / "/".join(parts[4:])
                if len(parts) >= 5 and parts[2] == "resolve"
                else None
            )
            if f is None or not f.is_file():
                self.send_response(404)
                self.send_header("X-Error-Code", "EntryNotFound")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            data = f.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("X-Repo-Commit", "0" * 40)
            self.end_headers()
            return data

        def do_HEAD(self):
            self._answer()

        def do_GET(self):
            data = self._answer()
            if data is not None:
                self.wfile.write(data)

        def log_message(self, *args):
            self.server.requests.append(self.path)

    return Handler


@contextlib.contextmanager
def hf_stand_in(root: Path):
    """Serve ``root`` as a hub; yields ``(endpoint_url, requests)`` (the paths asked for)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(Path(root)))
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server.requests
    finally:
        server.shutdown()
        server.server_close()
