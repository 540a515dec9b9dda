"""The COS service as one thing to start and stop: its wire (responses.CosApp) served on loopback,
the bucket's state (models.CosState), and what tests and the local cloud need from it (where it is,
a client, failure injection).
"""
from __future__ import annotations

import re
from typing import Any, Iterable

from werkzeug.serving import WSGIRequestHandler

from emulator.clients import cos_client
from emulator.httpserver import HttpServer

from .models import CosState, RequestRecord
from .responses import CosApp
from .signature import Credential


class _QuietHandler(WSGIRequestHandler):
    """No access log lines; a dropped connection is expected, not an error."""

    server_version = "tencent-cos"
    sys_version = ""

    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass

    def log_error(self, *args: Any) -> None:
        pass


class CosService:
    """A COS endpoint on loopback with one bucket, reachable with cos-python-sdk-v5:

        svc = CosService(secret_id="AKID...", secret_key="...").start()
        CosConfig(IP=svc.ip, Port=svc.port, Region=svc.region, Scheme="http", SecretId=..., SecretKey=...)

    Failure injection for tests: `fail_next(n)` (next n requests answer 503), `drop_next(n)` (next
    n connections are closed unanswered), `deny()` / `allow()` (every signed request refused with
    AccessDenied until allowed again). `requests` lists what was served.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        secret_id: str = "AKIDemulatorCosSecretId0000000000",
        secret_key: str = "emulatorCosSecretKey0123456789ab",
        region: str = "ap-guangzhou",
        bucket: str = "emulator-1250000000",
        state_dir: str | None = None,
        temporary_credentials: Iterable[tuple[str, str, str]] = (),
    ):
        if not re.fullmatch(r"[a-z0-9][a-z0-9-]*-\d+", bucket):
            raise ValueError(f"COS bucket {bucket!r} must look like 'name-1250000000' (BucketName-APPID)")
        creds = [Credential(secret_id, secret_key)] + [Credential(i, k, t) for i, k, t in temporary_credentials]
        self.state = CosState(region, bucket, creds, state_dir)
        self.secret_id = secret_id
        self.secret_key = secret_key
        self._host = host
        # Bound (its port known) once made, as the other local servers; served from start().
        self._http = HttpServer(CosApp(self.state), host, port, name="cos", poll_interval=0.1,
                                request_handler=_QuietHandler)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> "CosService":
        self.state.open()
        self._http.start()
        return self

    def stop(self) -> None:
        self._http.stop()
        self.state.close()

    def __enter__(self) -> "CosService":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- where it is ----------------------------------------------------------------------------

    @property
    def ip(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._http.port

    @property
    def region(self) -> str:
        return self.state.region

    @property
    def bucket(self) -> str:
        return self.state.bucket

    @property
    def endpoint_url(self) -> str:
        """What COS_ENDPOINT is set to for functions that should upload here."""
        return f"http://{self.ip}:{self.port}"

    @property
    def requests(self) -> list[RequestRecord]:
        return list(self.state.requests)

    @property
    def info(self) -> dict[str, Any]:
        """What a client needs (emulator.clients.cos_client), as `up`'s JSON line names it."""
        return {"cos": {"ip": self.ip, "port": self.port, "region": self.region, "bucket": self.bucket},
                "secretId": self.secret_id, "secretKey": self.secret_key}

    def client(self, secret_id: str | None = None, secret_key: str | None = None, token: str | None = None) -> Any:
        """A CosS3Client aimed at this endpoint (the service's own keys unless others are given)."""
        return cos_client(self.info, secret_id=secret_id or self.secret_id, secret_key=secret_key or self.secret_key,
                          token=token)

    @property
    def env(self) -> dict[str, str]:
        """The environment a function needs to upload here (its COS client is redirected)."""
        return {"COS_ENDPOINT": self.endpoint_url}

    def list_keys(self, prefix: str = "") -> list[str]:
        """Every key under `prefix`, in order, listed through the SDK."""
        keys: list[str] = []
        marker = ""
        while True:
            page = self.client().list_objects(Bucket=self.bucket, Prefix=prefix, Marker=marker, MaxKeys=1000)
            keys += [o["Key"] for o in page.get("Contents", [])]
            if page.get("IsTruncated") != "true":
                return keys
            marker = page.get("NextMarker") or keys[-1]

    def get_object_bytes(self, key: str) -> bytes:
        """An object's content, read through the SDK as a user would."""
        return self.client().get_object(Bucket=self.bucket, Key=key)["Body"].get_raw_stream().read()

    # --- credentials and failures ---------------------------------------------------------------

    def add_temporary_credentials(self, secret_id: str, secret_key: str, token: str) -> None:
        self.state.add_credential(Credential(secret_id, secret_key, token))

    def fail_next(self, n: int = 1, status: int = 503, code: str = "ServiceUnavailable",
                  message: str = "Service is unavailable now, please try again later.", when: str | None = None) -> None:
        """The next `n` requests (those whose "METHOD key?query" contains `when`, if given) fail."""
        self.state.faults.fail_next(n, status, code, message, when)

    def drop_next(self, n: int = 1, when: str | None = None) -> None:
        """The next `n` connections (matching `when`, as for fail_next) are closed unanswered."""
        self.state.faults.drop_next(n, when)

    def deny(self, code: str = "AccessDenied", message: str = "Access Denied.", status: int = 403) -> None:
        self.state.faults.deny(code, message, status)

    def allow(self) -> None:
        self.state.faults.allow()

    def clear_faults(self) -> None:
        self.state.faults.clear()
