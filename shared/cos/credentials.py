"""COS credentials: the ones a call gives (CosConfig.SecretId/SecretKey), else the execution role's
temporary credentials SCF puts in the environment (TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY,
TENCENTCLOUD_SESSIONTOKEN). Every secret is registered for redaction as soon as it is read.
"""
from __future__ import annotations

from dataclasses import dataclass

from shared.secrets import redact_value
from shared.settings import settings

from .errors import UploadError


@dataclass(frozen=True)
class Credentials:
    secret_id: str
    secret_key: str
    token: str | None = None
    source: str = "parameters"  # or "environment" (the execution role)



def resolve_credentials(secret_id: str | None = None, secret_key: str | None = None,
                        token: str | None = None) -> Credentials:
    """The credentials given, else the execution role's from the environment, else UploadError."""
    if secret_id or secret_key:
        if not (secret_id and secret_key):
            missing = "SecretKey" if secret_id else "SecretId"
            raise UploadError(f"upload failed: MissingCredentials: CosConfig.{missing} is missing "
                              "(give both SecretId and SecretKey, or neither to use the execution role)",
                              "MissingCredentials")
        creds = Credentials(secret_id, secret_key, token or None, "parameters")
    else:
        s = settings()
        env_id, env_key, env_token = s.tencentcloud_secretid, s.tencentcloud_secretkey, s.tencentcloud_sessiontoken
        if not (env_id and env_key):
            raise UploadError(
                "upload failed: MissingCredentials: no COS credentials; give CosConfig.SecretId and SecretKey, "
                "or run the function with an execution role that may write to the bucket "
                "(SCF then sets TENCENTCLOUD_SECRETID, TENCENTCLOUD_SECRETKEY, TENCENTCLOUD_SESSIONTOKEN)",
                "MissingCredentials")
        creds = Credentials(env_id, env_key, env_token, "environment")
    for v in (creds.secret_id, creds.secret_key, creds.token):
        redact_value(v)
    return creds
