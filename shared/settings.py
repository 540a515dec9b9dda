"""The deployment's configuration: every environment variable the functions read, in one model.

`settings()` reads the environment, validates every documented variable and hands back a frozen
`Settings`; a bad value of any of them is a `ConfigError` naming the variable and the values it
accepts, never a silent default. `value(name)` reads one variable alone, validated the same way (the
image's entry server, which must start whatever else is wrong, and leaves that to the call). The gateway's preflight calls it before a run starts, so a wrong
setting fails the first call at once as a `configuration_error`; the code reading a setting later
calls it again and gets the same, already validated object (it is cached on the variables' values,
so a test that changes the environment gets a fresh one).

README's "Environment variables" table lists exactly the names in `VARIABLES` (a test checks).
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator, model_validator

from shared.redis.address import parse_redis_url

MB = 1024 * 1024

# Defaults other modules build with (their one value is here).
DEFAULT_CHECKPOINT_TTL_S = 7 * 24 * 3600
DEFAULT_PUSH_MAX_AREA = 1920 * 1080
DEFAULT_PUSH_MAX_FPS = 30
DEFAULT_RECORD_STATE_PREFIX = ".recording/"

# The TRTC SDK's choices: SetLogLevel's levels and TRTCScene without its TRTC_SCENE_ prefix.
LITEAV_LOG_LEVELS = {"debug": 0, "info": 1, "warning": 2, "error": 3, "fatal": 4, "none": 5}
TRTC_SCENES = ("video_call", "audio_call", "live", "voice_chat", "record")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class ConfigError(ValueError):
    """A setting is wrong; the message names the variable and what it accepts."""


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


class Settings(BaseModel):
    """One field per environment variable (the alias is the variable's name)."""

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="ignore")

    # the room
    room_backend: str = "trtc"
    local_room_address: Optional[str] = None
    liteav_log_level: str = "warning"
    trtc_push_scene: str = "live"
    trtc_record_scene: str = "record"
    # where the functions may connect
    source_allowlist: tuple[str, ...] = ()
    callback_allowlist: tuple[str, ...] = ()
    redis_allowlist: tuple[str, ...] = ()
    asr_allowlist: tuple[str, ...] = ()
    local_source_dirs: tuple[str, ...] = ()  # comma- or os.pathsep-separated
    # push_stream
    source_timeout_seconds: float = 15.0
    checkpoint_ttl_seconds: int = DEFAULT_CHECKPOINT_TTL_S
    redis_url: Optional[str] = None  # push_stream's and push_control's default Redis
    pacing_speed: float = 1.0
    push_max_area: int = DEFAULT_PUSH_MAX_AREA  # pixels, or WxH
    push_max_fps: int = DEFAULT_PUSH_MAX_FPS
    # record_stream
    cfs_path: Optional[Path] = None
    record_min_free_mb: float = 64.0
    callback_sign_key: Optional[str] = None
    callback_retry_seconds: float = 60.0  # how long a callback is retried at least
    cos_endpoint: Optional[str] = None
    cos_allowlist: tuple[str, ...] = ()  # where COS_ENDPOINT may be although internal
    # record_stream's recovery: where each run keeps its state, and where the timer asks SCF
    record_state_bucket: Optional[str] = None
    record_state_region: Optional[str] = None
    record_state_prefix: str = DEFAULT_RECORD_STATE_PREFIX
    scf_api_endpoint: Optional[str] = None
    # recognize_stream: the speech recognition service (ws[s]://host[:port]; unset: Tencent's)
    asr_endpoint: Optional[str] = None
    # the execution role's temporary keys (SCF sets them)
    tencentcloud_secretid: Optional[str] = None
    tencentcloud_secretkey: Optional[str] = None
    tencentcloud_sessiontoken: Optional[str] = None
    tencentcloud_region: Optional[str] = None  # the function's region (SCF sets it)
    # the image's entry
    entry_function: Optional[str] = None
    entry_listen: str = "0.0.0.0:9000"  # SCF's fixed port for image functions
    entry_max_workers: int = 4  # invocations one instance runs at once (each a process with PyAV loaded)
    entry_read_timeout_seconds: float = 30.0  # a request's bytes must keep coming at least this often
    # every function
    stop_margin_seconds: float = 10.0
    log_level: str = "INFO"

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, v: Any, info: Any) -> Any:
        # An empty variable means "not set" (serverless.yml writes every variable, some empty).
        if isinstance(v, str) and not v.strip():
            return cls.model_fields[info.field_name].default
        return v.strip() if isinstance(v, str) else v

    @field_validator("room_backend", "liteav_log_level", "trtc_push_scene", "trtc_record_scene", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> Any:
        return v.lower() if isinstance(v, str) else v

    @field_validator("room_backend")
    @classmethod
    def _room_backend(cls, v: str) -> str:
        return _one_of(v, ("trtc", "local"))

    @field_validator("liteav_log_level")
    @classmethod
    def _liteav_log_level(cls, v: str) -> str:
        if v.isdigit() and int(v) in LITEAV_LOG_LEVELS.values():
            return next(name for name, n in LITEAV_LOG_LEVELS.items() if n == int(v))
        return _one_of(v, tuple(LITEAV_LOG_LEVELS), " (or 0..5)")

    @field_validator("trtc_push_scene", "trtc_record_scene")
    @classmethod
    def _scene(cls, v: str) -> str:
        return _one_of(v.removeprefix("trtc_scene_"), TRTC_SCENES)

    @field_validator("local_room_address", "entry_listen")
    @classmethod
    def _host_port(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        host, _, port = v.rpartition(":")
        if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError("must be host:port")
        return v

    @field_validator("local_source_dirs", mode="before")
    @classmethod
    def _dirs(cls, v: Any) -> Any:
        if isinstance(v, str):
            return tuple(p.strip() for chunk in v.split(",") for p in chunk.split(os.pathsep) if p.strip())
        return v

    @field_validator("source_allowlist", "callback_allowlist", "redis_allowlist", "cos_allowlist", "asr_allowlist",
                     mode="before")
    @classmethod
    def _allowlist(cls, v: Any) -> Any:
        items = _split_list(v) if isinstance(v, str) else tuple(v or ())
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                if not all(part.isalnum() or part == "" for part in item.replace("-", "").split(".")) or "/" in item:
                    raise ValueError(f"{item!r} is neither a CIDR, an address nor a host name") from None
        return items

    @field_validator("source_timeout_seconds", "entry_read_timeout_seconds")
    @classmethod
    def _positive(cls, v: float) -> float:
        if not 0 < v < float("inf"):
            raise ValueError("must be a number above 0")
        return v

    @field_validator("pacing_speed")
    @classmethod
    def _speed(cls, v: float) -> float:
        if not 0 < v <= 1000:
            raise ValueError("must be a number above 0, at most 1000")
        return v

    @field_validator("push_max_area", mode="before")
    @classmethod
    def _area(cls, v: Any) -> Any:
        if isinstance(v, str):
            m = re.fullmatch(r"(\d+)\s*[xX*]\s*(\d+)", v)
            if m:
                return int(m.group(1)) * int(m.group(2))
            if not v.isdigit():
                raise ValueError("must be a number of pixels or WxH (such as 1920x1080)")
        return v

    @field_validator("push_max_area", "push_max_fps", "entry_max_workers")
    @classmethod
    def _above_zero(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be 1 or more")
        return v

    @field_validator("callback_retry_seconds")
    @classmethod
    def _retry_window(cls, v: float) -> float:
        if not 0 < v <= 3600:
            raise ValueError("must be a number of seconds, more than 0 and at most 3600")
        return v

    @field_validator("stop_margin_seconds", "record_min_free_mb")
    @classmethod
    def _not_negative(cls, v: float) -> float:
        if not 0 <= v < float("inf"):
            raise ValueError("must be a number of 0 or more")
        return v

    @field_validator("checkpoint_ttl_seconds")
    @classmethod
    def _ttl(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be a whole number of seconds, 1 or more")
        return v

    @field_validator("cos_endpoint")
    @classmethod
    def _endpoint(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        if "://" not in v:
            v = f"http://{v}"
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ValueError("must be http://host:port") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be http://host:port")
        return v.rstrip("/")

    @field_validator("asr_endpoint")
    @classmethod
    def _asr_endpoint(cls, v: Optional[str]) -> Optional[str]:
        if v is None:
            return v
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018  (raises on a bad port)
        except ValueError:
            raise ValueError("must be wss://host[:port] (or ws:// for a local service)") from None
        if parts.scheme not in ("ws", "wss") or not parts.hostname or parts.path.strip("/"):
            raise ValueError("must be wss://host[:port] (or ws:// for a local service)")
        return v.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, v: Optional[str]) -> Optional[str]:
        if v is not None:
            parse_redis_url(v)
        return v

    @field_validator("entry_function")
    @classmethod
    def _entry(cls, v: Optional[str]) -> Optional[str]:
        return v  # the image's entry checks it against its own function list (deploy/entry.py)

    @field_validator("log_level", mode="before")
    @classmethod
    def _log_level(cls, v: Any) -> Any:
        return _one_of(v.upper(), LOG_LEVELS) if isinstance(v, str) else v

    @model_validator(mode="after")
    def _local_needs_address(self, info: ValidationInfo) -> "Settings":
        if info.context and info.context.get("alone"):
            return self  # one variable read alone (`value`): rules tying it to others wait for settings()
        if self.room_backend == "local" and not self.local_room_address:
            raise ValueError("ROOM_BACKEND=local needs LOCAL_ROOM_ADDRESS=host:port")
        return self

    @property
    def min_free_bytes(self) -> int:
        return int(self.record_min_free_mb * MB)


def _one_of(value: str, choices: tuple[str, ...], more: str = "") -> str:
    if value not in choices:
        raise ValueError(f"is not one of {', '.join(choices)}{more}")
    return value


# Variables whose values are secrets (or may carry one): an error names them without their value.
SECRET_VARIABLES = frozenset({"REDIS_URL", "CALLBACK_SIGN_KEY", "TENCENTCLOUD_SECRETID", "TENCENTCLOUD_SECRETKEY",
                              "TENCENTCLOUD_SESSIONTOKEN"})

# Variable name -> field name; README's table lists exactly these names.
VARIABLES: dict[str, str] = {name.upper(): name for name in Settings.model_fields}


def _explain(err: ValidationError, env: Mapping[str, str]) -> str:
    problems = []
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        name = field.upper()
        msg = str(e["msg"]).removeprefix("Value error, ")
        kind = str(e["type"])
        if kind.startswith("float") or kind.startswith("int"):
            msg = "must be a number" if kind.startswith("float") else "must be a whole number"
        if name in SECRET_VARIABLES:  # never echo a secret: name it alone
            problems.append(msg if msg.startswith(name) else f"{name} {msg}")
        elif name in VARIABLES:
            problems.append(f"{name}={env.get(name, '')!r} {msg}")
        else:
            problems.append(msg)
    return "; ".join(problems)


@functools.lru_cache(maxsize=16)
def _load(values: tuple[tuple[str, str], ...]) -> Settings:
    env = dict(values)
    try:
        return Settings.model_validate({VARIABLES[name]: value for name, value in env.items()})
    except ValidationError as e:
        raise ConfigError(_explain(e, env)) from None


def settings(env: Optional[Mapping[str, str]] = None) -> Settings:
    """The validated settings of `env` (os.environ by default); ConfigError names what is wrong."""
    env = os.environ if env is None else env
    return _load(tuple((name, env[name]) for name in VARIABLES if name in env))


def value(name: str, env: Optional[Mapping[str, str]] = None) -> Any:
    """The one variable `name` of `env` (os.environ by default), validated alone: its default when
    unset, ConfigError naming it when wrong. Whatever else is wrong is left to `settings()`."""
    env = os.environ if env is None else env
    field = VARIABLES[name]
    given = {field: env[name]} if name in env else {}
    try:
        return getattr(Settings.model_validate(given, context={"alone": True}), field)
    except ValidationError as e:
        raise ConfigError(_explain(e, env)) from None


def check(env: Optional[Mapping[str, str]] = None) -> Callable[[], Settings]:
    """A gateway preflight: validates the settings of `env` when called."""
    return lambda: settings(env)
