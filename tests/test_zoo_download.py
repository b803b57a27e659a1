"""Downloads against a server on 127.0.0.1: progress, resume, checksum, offline error, zoo fetch."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from restorecli.errors import ChecksumError, DownloadError
from restorecli.zoo import architectures, download, loader, pretrained

pytestmark = pytest.mark.network

PAYLOAD = bytes(range(256)) * 4096  # 1 MiB


class _Server:
    """Serves ``files`` (path -> bytes) with HTTP Range support and records the Range headers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {"/weights.bin": PAYLOAD, "/page.html": b"<html>consent</html>"}
        self.ranges: list[str | None] = []
        self.cut_short = 0  # bytes the server promises but does not send
        self.sends_length = True
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # the name http.server calls
                body = server.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                requested = self.headers.get("Range")
                server.ranges.append(requested)
                status, start = 200, 0
                if requested:
                    start = int(requested.removeprefix("bytes=").split("-")[0])
                    status = 206
                if start >= len(body):  # nothing left to send: RFC 9110's 416 with the file's size
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(status)
                kind = "text/html" if self.path.endswith(".html") else "application/octet-stream"
                self.send_header("Content-Type", kind)
                if server.sends_length:
                    self.send_header("Content-Length", str(len(body) - start))
                self.end_headers()
                self.wfile.write(body[start : len(body) - server.cut_short])

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture
def server() -> Iterator[_Server]:
    instance = _Server()
    yield instance
    instance.httpd.shutdown()
    instance.httpd.server_close()


def test_download_verifies_checksum_and_shows_progress(
    server: _Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "w.bin"
    download.download(f"{server.url}/weights.bin", target, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    assert target.read_bytes() == PAYLOAD
    assert not target.with_name("w.bin.part").exists()
    assert "w.bin" in capsys.readouterr().err  # tqdm writes to stderr


def test_download_resumes_a_partial_file(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    target.with_name("w.bin.part").write_bytes(PAYLOAD[:1000])
    download.download(f"{server.url}/weights.bin", target, progress=False)
    assert server.ranges == ["bytes=1000-"]
    assert target.read_bytes() == PAYLOAD


def test_a_stream_cut_short_is_kept_as_partial_and_resumed(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    server.cut_short = 100
    with pytest.raises(DownloadError, match=f"got {len(PAYLOAD) - 100} of {len(PAYLOAD)} bytes"):
        download.download(f"{server.url}/weights.bin", target, progress=False)
    assert not target.exists()
    server.cut_short = 0
    download.download(f"{server.url}/weights.bin", target, progress=False)
    assert server.ranges[-1] == f"bytes={len(PAYLOAD) - 100}-"
    assert target.read_bytes() == PAYLOAD


def test_checksum_mismatch_is_rejected_and_nothing_is_kept(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    with pytest.raises(ChecksumError, match="Expected SHA-256 0+"):
        download.download(f"{server.url}/weights.bin", target, sha256="0" * 64, progress=False)
    assert not target.exists()
    assert not target.with_name("w.bin.part").exists()


def test_a_web_page_instead_of_weights_is_rejected(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="web page"):
        download.download(f"{server.url}/page.html", tmp_path / "w.bin", progress=False)


def test_offline_error_names_the_url_and_the_path_to_place_the_file(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/weights.bin"
    target = tmp_path / "w.bin"
    with pytest.raises(DownloadError) as info:
        download.download(url, target, progress=False, timeout=2)
    assert url in str(info.value) and str(target) in str(info.value)


def test_http_error_status_is_reported(server: _Server, tmp_path: Path) -> None:
    with pytest.raises(DownloadError, match="HTTP 404"):
        download.download(f"{server.url}/missing.bin", tmp_path / "w.bin", progress=False)


def test_file_url(tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    target = tmp_path / "out" / "w.bin"
    download.download(source.as_uri(), target, sha256=hashlib.sha256(PAYLOAD).hexdigest(), progress=False)
    assert target.read_bytes() == PAYLOAD


def test_zoo_entry_downloads_into_the_cache_then_loads_from_it(
    server: _Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = architectures.build_model("nafnet", "tiny").state_dict()
    checkpoint = tmp_path / "served.pth"
    torch.save({"params": state}, checkpoint)
    data = checkpoint.read_bytes()
    server.files["/tiny.pth"] = data
    entry = replace(
        pretrained.get_entry("nafnet-sidd-width32"),
        name="nafnet-test-tiny",
        config="tiny",
        filename="tiny-test.pth",
        url=f"{server.url}/tiny.pth",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    monkeypatch.setattr(pretrained, "_BY_NAME", {entry.name: entry})
    monkeypatch.setattr(download, "SHIPPED_WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setenv("RESTORECLI_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    descriptor = loader.load_descriptor(entry.name, progress=False)
    cached = tmp_path / "home" / "weights" / "tiny-test.pth"
    assert cached.read_bytes() == data
    assert descriptor.extra["weights"] == str(cached)
    loader.load_descriptor(entry.name, progress=False)  # second time: from the cache, no request
    assert server.ranges == [None]


def test_cache_dir_honours_restorecli_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESTORECLI_HOME", str(tmp_path))
    assert download.cache_dir() == tmp_path / "weights"
    monkeypatch.delenv("RESTORECLI_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(download.sys, "platform", "linux")
    assert download.cache_dir() == tmp_path / "xdg" / "restorecli" / "weights"


@pytest.mark.parametrize("extra", [0, 5000], ids=["complete", "longer than the file"])
def test_a_partial_file_the_server_calls_complete_is_trusted_only_at_the_files_size(
    server: _Server, tmp_path: Path, extra: int
) -> None:
    target = tmp_path / "w.bin"
    target.with_name("w.bin.part").write_bytes(PAYLOAD + b"x" * extra)
    download.download(f"{server.url}/weights.bin", target, progress=False)
    assert target.read_bytes() == PAYLOAD  # a longer one (two writers, an old file) was fetched again


def test_two_downloads_of_one_file_take_turns(server: _Server, tmp_path: Path) -> None:
    target = tmp_path / "w.bin"
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            download.download(f"{server.url}/weights.bin", target, progress=False)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    workers = [threading.Thread(target=fetch) for _ in range(3)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and target.read_bytes() == PAYLOAD
    assert server.ranges.count(None) == 1  # fetched once; the others found it done


def test_an_unwritable_cache_folder_is_one_line_naming_it(server: _Server, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(DownloadError, match=r"^Cannot write .*afile.*downloading http") as error:
        download.download(f"{server.url}/weights.bin", tmp_path / "afile" / "weights" / "w.bin", progress=False)
    assert "\n" not in str(error.value)


def test_a_response_without_a_length_is_taken_with_a_warning(
    server: _Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server.sends_length = False
    target = tmp_path / "w.bin"
    download.download(f"{server.url}/weights.bin", target, progress=False)
    assert target.read_bytes() == PAYLOAD
    assert any("sends no length" in record.getMessage() for record in caplog.records)
