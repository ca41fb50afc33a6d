"""A stand-in for every data host, on 127.0.0.1, counting the requests it answers.

* Hugging Face, as ``huggingface_hub`` talks to it through ``HF_ENDPOINT``:
  ``GET /api/datasets/<repo>/revision/<rev>`` (``dataset_info``: the commit sha and the files with their
  LFS size and SHA-256) and ``HEAD`` / ``GET /datasets/<repo>/resolve/<rev>/<file>`` (``hf_hub_download``:
  ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers, then the bytes).
* Plain files at any other path (the Wayback archive, COCO's per-image and zip addresses), with
  ``Range: bytes=N-`` answered by ``206 Partial Content``.

``cut_once[path] = n`` makes the next GET of ``path`` announce the full length but close after ``n``
bytes (an interrupted transfer); ``hub_sha256[(repo, file)]`` overrides the sum the Hub records (a file
whose bytes differ from its record). ``log`` holds ``(method, path, range header)`` per request.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
import urllib.parse


class StandIn:
    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.repos: dict[str, dict] = {}
        self.cut_once: dict[str, int] = {}
        self.hub_sha256: dict[tuple, str] = {}
        self.log: list[tuple] = []
        self._lock = threading.Lock()
        handler = _make_handler(self)
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def add_repo(self, repo: str, files: dict[str, bytes], sha: str | None = None) -> str:
        sha = sha or hashlib.sha1(repo.encode() + b"".join(files[k] for k in sorted(files))).hexdigest()
        self.repos[repo] = {"sha": sha, "files": dict(files)}
        return sha

    def requests(self, prefix: str = "") -> list[tuple]:
        with self._lock:
            return [r for r in self.log if r[1].startswith(prefix)]

    def clear(self) -> None:
        with self._lock:
            self.log.clear()

    # -- what a path resolves to -----------------------------------------------------------------------

    def _hub_info(self, path: str):
        repo, rev = path[len("/api/datasets/") :].rsplit("/revision/", 1)
        r = self.repos.get(repo)
        if r is None or rev not in ("main", r["sha"]):
            return None
        siblings = []
        for name, data in sorted(r["files"].items()):
            sha = self.hub_sha256.get((repo, name), hashlib.sha256(data).hexdigest())
            siblings.append(
                {
                    "rfilename": name,
                    "size": len(data),
                    "lfs": {"size": len(data), "sha256": sha, "pointerSize": 134},
                }
            )
        return json.dumps({"id": repo, "sha": r["sha"], "siblings": siblings}).encode(), {}

    def _hub_file(self, path: str):
        repo, rest = path[len("/datasets/") :].split("/resolve/", 1)
        rev, name = rest.split("/", 1)
        r = self.repos.get(repo)
        if r is None or rev not in ("main", r["sha"]) or name not in r["files"]:
            return None
        data = r["files"][name]
        etag = self.hub_sha256.get((repo, name), hashlib.sha256(data).hexdigest())
        return data, {"X-Repo-Commit": r["sha"], "ETag": f'"{etag}"'}

    def lookup(self, path: str):
        if path.startswith("/api/datasets/") and "/revision/" in path:
            return self._hub_info(path)
        if path.startswith("/datasets/") and "/resolve/" in path:
            return self._hub_file(path)
        if path in self.files:
            return self.files[path], {}
        return None


def _make_handler(stand: StandIn):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def _answer(self, head: bool):
            path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
            rng = self.headers.get("Range")
            with stand._lock:
                stand.log.append((self.command, path, rng))
            found = stand.lookup(path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data, headers = found
            start = 0
            if rng and rng.startswith("bytes=") and not head:
                start = int(rng[6:].split("-")[0] or 0)
            if start >= len(data) > 0:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body = data[start:]
            self.send_response(206 if start else 200)
            for k, v in headers.items():
                self.send_header(k, v)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(len(body)))
            cut = None if head else stand.cut_once.pop(path, None)
            if cut is not None:
                self.send_header("Connection", "close")
            self.end_headers()
            if head:
                return
            if cut is not None:
                self.wfile.write(body[:cut])
                self.wfile.flush()
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_GET(self):
            self._answer(head=False)

        def do_HEAD(self):
            self._answer(head=True)

    return Handler
