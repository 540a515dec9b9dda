"""Sources and callbacks that resolve inside the VPC are refused unless allowlisted."""
import pytest

from shared.egress import DestinationRefused, check_destination


@pytest.mark.parametrize("url,why", [
    ("http://127.0.0.1:8080/a.mp4", "loopback"),
    ("http://10.0.0.5/a.mp4", "private"),
    ("rtmp://192.168.1.2/live/x", "private"),
    ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://metadata.tencentyun.com/latest", "metadata"),
    ("http://[::1]/a.mp4", "loopback"),
    ("http://localhost/a.mp4", "loopback"),
])
def test_internal_destinations_refused_by_default(monkeypatch, url, why):
    monkeypatch.delenv("SOURCE_ALLOWLIST", raising=False)
    with pytest.raises(DestinationRefused, match=why) as e:
        check_destination(url, "SOURCE_ALLOWLIST", "videoSrc")
    assert "SOURCE_ALLOWLIST" in str(e.value)


def test_allowlist_opens_loopback(monkeypatch):
    monkeypatch.setenv("CALLBACK_ALLOWLIST", "127.0.0.0/8")
    check_destination("http://127.0.0.1:9/cb", "CALLBACK_ALLOWLIST", "Callback")
    with pytest.raises(DestinationRefused):
        check_destination("http://10.1.1.1/cb", "CALLBACK_ALLOWLIST", "Callback")


def test_public_address_and_local_paths_pass(monkeypatch):
    monkeypatch.delenv("SOURCE_ALLOWLIST", raising=False)
    check_destination("http://1.12.0.1/a.mp4", "SOURCE_ALLOWLIST", "videoSrc")  # no lookup for literals
    check_destination("/data/a.mp4", "SOURCE_ALLOWLIST", "videoSrc")
    check_destination("file:///data/a.mp4", "SOURCE_ALLOWLIST", "videoSrc")


def test_unresolvable_host_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("SOURCE_ALLOWLIST", raising=False)
    with pytest.raises(DestinationRefused, match="does not resolve"):
        check_destination("http://no-such-host.invalid/a.mp4", "SOURCE_ALLOWLIST", "videoSrc")


def test_connect_resolves_once_and_connects_to_the_checked_address(monkeypatch, fake_dns):
    import socket

    from shared.egress import connect

    monkeypatch.setenv("SOURCE_ALLOWLIST", "127.0.0.1/32")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    fake_dns["once.egress.test"] = ["127.0.0.1", "127.0.0.2"]
    try:
        sock = connect("once.egress.test", port, "SOURCE_ALLOWLIST", "videoSrc", 2.0)
        assert sock.getpeername() == ("127.0.0.1", port) and fake_dns.lookups["once.egress.test"] == 1
        sock.close()
        with pytest.raises(DestinationRefused, match=r"once.egress.test \(127.0.0.2\) is a loopback address"):
            connect("once.egress.test", port, "SOURCE_ALLOWLIST", "videoSrc", 2.0)  # the next answer
    finally:
        server.close()


def test_local_paths_only_under_local_source_dirs(tmp_path, monkeypatch):
    import os

    from shared.egress import check_local_path

    allowed, other = tmp_path / "a", tmp_path / "b"
    allowed.mkdir()
    other.mkdir()
    (other / "x.mp4").write_bytes(b"x")
    os.symlink(other / "x.mp4", allowed / "link.mp4")
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", f"{tmp_path / 'nope'},{allowed}")
    assert check_local_path(str(allowed / "clip.mp4")) == str((allowed / "clip.mp4").resolve())
    for path in (other / "x.mp4", allowed / "link.mp4", allowed / ".." / "b" / "x.mp4", tmp_path / "a2" / "x"):
        with pytest.raises(DestinationRefused, match="LOCAL_SOURCE_DIRS"):
            check_local_path(str(path))
    monkeypatch.setenv("LOCAL_SOURCE_DIRS", f"{other}{os.pathsep}{allowed}")
    assert check_local_path(str(allowed / "link.mp4")) == str((other / "x.mp4").resolve())
    monkeypatch.delenv("LOCAL_SOURCE_DIRS")
    with pytest.raises(DestinationRefused, match="names no directory"):
        check_local_path(str(allowed / "clip.mp4"))


def test_a_pinned_session_speaks_tls_to_the_name_it_was_given(tmp_path, monkeypatch, fake_dns):
    """Connected to the checked address, the TLS handshake still sends the name (SNI) and the
    certificate is checked against the name, not the address."""
    import http.server
    import threading

    import requests

    from shared.egress import pinned_session
    from tests.fakes.tls import self_signed, server_context

    class Ok(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(self.headers["Host"].split(":")[0][:2].encode())

        def log_message(self, *args) -> None:
            pass

    cert, key = self_signed(tmp_path, "tls.egress.test")
    sni: list = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    server.socket = server_context(cert, key, sni).wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    monkeypatch.setenv("CALLBACK_ALLOWLIST", "127.0.0.1/32")
    fake_dns["tls.egress.test"] = ["127.0.0.1"]
    port = server.server_address[1]
    try:
        with pinned_session("CALLBACK_ALLOWLIST", "Callback") as s:
            r = s.get(f"https://tls.egress.test:{port}/", verify=str(cert), timeout=5)
            assert r.status_code == 200 and r.content == b"tl"  # Host: the name
            with pytest.raises(requests.exceptions.SSLError):
                s.get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=5)  # not the cert's name
        assert sni[0] == "tls.egress.test"
    finally:
        server.shutdown()
        server.server_close()
