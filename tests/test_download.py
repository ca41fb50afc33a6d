"""Downloads against archives served on 127.0.0.1 (never the internet)."""

import functools
import hashlib
import http.server
import threading
import zipfile
from pathlib import Path

import pytest

from refseg_core.data.download import (
    DownloadError,
    download,
    download_and_extract,
    extract_zip,
    prepare_refer_data,
)


@pytest.fixture()
def served(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def make_zip(path: Path, files: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verifies_checksum_and_leaves_nothing_on_mismatch(served, tmp_path):
    root, url = served
    (root / "a.bin").write_bytes(b"hello" * 1000)
    good = hashlib.sha256(b"hello" * 1000).hexdigest()
    dest = tmp_path / "out" / "a.bin"
    assert download(f"{url}/a.bin", dest, sha256=good, progress=False).read_bytes() == b"hello" * 1000
    dest.unlink()
    with pytest.raises(DownloadError, match="checksum mismatch"):
        download(f"{url}/a.bin", dest, sha256="0" * 64, progress=False)
    assert not dest.exists() and not list(dest.parent.glob("*.partial"))


def test_missing_url_names_it(served, tmp_path):
    _, url = served
    with pytest.raises(DownloadError, match="nothere.zip"):
        download(f"{url}/nothere.zip", tmp_path / "x.zip", progress=False)
    assert not (tmp_path / "x.zip").exists()


def test_prepare_refer_data_lays_out_the_folders(served, tmp_path):
    root, url = served
    sums = {
        "refcoco.zip": make_zip(
            root / "refcoco.zip", {"refcoco/refs(unc).p": b"x", "refcoco/instances.json": b"{}"}
        ),
        "train2014.zip": make_zip(
            root / "train2014.zip", {"train2014/COCO_train2014_000000000001.jpg": b"jpg"}
        ),
    }
    out = prepare_refer_data(
        tmp_path / "data",
        url,
        datasets=("refcoco.zip",),
        coco_url=f"{url}/train2014.zip",
        checksums=sums,
        progress=False,
    )
    assert (out / "refcoco" / "refs(unc).p").read_bytes() == b"x"
    assert (out / "images" / "train2014" / "COCO_train2014_000000000001.jpg").exists()
    assert not list(out.rglob("*.zip")) and not list(out.rglob(".extract-*"))


def test_unsafe_and_corrupt_archives_are_refused(tmp_path):
    bad = tmp_path / "evil.zip"
    make_zip(bad, {"../escape.txt": b"x"})
    with pytest.raises(DownloadError, match="unsafe path"):
        extract_zip(bad, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip")
    with pytest.raises(DownloadError, match="junk.zip"):
        extract_zip(junk, tmp_path / "dest")


def test_download_and_extract_removes_archive(served, tmp_path):
    root, url = served
    make_zip(root / "x.zip", {"a/b.txt": b"b"})
    paths = download_and_extract(f"{url}/x.zip", tmp_path / "d", progress=False)
    assert [p.name for p in paths] == ["b.txt"] and not (tmp_path / "d" / "x.zip").exists()


def test_a_transfer_cut_short_of_its_content_length_is_an_error(tmp_path):
    """Issue 14 item 6: http.client ends a cut-off body quietly; the download must not look finished."""

    class Short(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Length", "5000")
            self.end_headers()
            self.wfile.write(b"x" * 1200)  # then the connection closes

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Short)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with pytest.raises(DownloadError, match="1200 of the 5000 bytes"):
            download(f"http://127.0.0.1:{server.server_address[1]}/a.zip", tmp_path / "a.zip", progress=False)
    finally:
        server.shutdown()
    assert not list(tmp_path.iterdir())


def test_coco_train2014_is_checked_against_its_known_sha256_and_refer_archives_are_flagged(served, tmp_path):
    from refseg_core.data.download import COCO_TRAIN2014_SHA256

    root, url = served
    make_zip(root / "refcoco.zip", {"refcoco/refs(unc).p": b"x"})
    make_zip(root / "train2014.zip", {"train2014/COCO_train2014_000000000001.jpg": b"not coco"})
    assert len(COCO_TRAIN2014_SHA256) == 64
    with pytest.warns(UserWarning, match="refcoco.zip.*unverified"):
        with pytest.raises(DownloadError, match=f"checksum mismatch .*{COCO_TRAIN2014_SHA256}"):
            prepare_refer_data(
                tmp_path / "data",
                url,
                datasets=("refcoco.zip",),
                coco_url=f"{url}/train2014.zip",
                progress=False,
            )
    assert not (tmp_path / "data" / "images" / "train2014").exists()
