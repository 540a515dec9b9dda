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
