"""record_stream's parameters: the seed's names and types (003), plus the optional extensions.

The gateway hands strings, so "1400000001" and "300" are accepted where an int is meant (pydantic's
lax mode); a boolean is never a number (shared.contracts.fields.Params). Everything that can be
checked before the recording starts is checked here (CosConfig.Path by the rule object keys obey, shared.rules.record, the
SecretId/SecretKey pair, the Callback URL), so that no recording is lost at its upload. Every bad
field is reported at once; `shared.gateway` turns the errors into one sentence naming them.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional

from pydantic import Field, SecretStr, ValidationInfo, WithJsonSchema, field_validator

from shared.rules.record import (
    DEFAULT_SEGMENT_S,
    MAX_SEGMENT_S,
    MIN_SEGMENT_S,
    MODE_MP3,
    OUTPUT_FORMAT_RULE,
    OUTPUT_FORMATS,
    TRTC_OUTPUT_FORMATS,
    output_format,
    path_problem,
)
from shared.secrets import redact_value

from .fields import Params
from .lifecycle import MAX_IDEMPOTENCY_KEY, callback_url, state_bucket_key
from .member import RoomMember, comma_list, user_ids

# COS bucket names are "<name>-<appid>", lower-case letters, digits and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9\-]{0,62}$")
_REGION = re.compile(r"^[a-z0-9\-]{1,40}$")


# OutputFormat is read by rules.output_format (names or TRTC's numbers); the schema says both.
OutputFormatField = Annotated[str, WithJsonSchema({"anyOf": [
    {"type": "string", "enum": list(OUTPUT_FORMATS)},
    {"type": "integer", "enum": sorted(TRTC_OUTPUT_FORMATS)}]})]


def _mode(v: Any) -> Any:
    # "00" is the seed's spelling; 0 / "0" / 2 are what a form or a careless client sends.
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and 0 <= v <= 2:
        return f"{v:02d}"
    if isinstance(v, str) and v.strip() in ("0", "1", "2"):
        return f"{int(v.strip()):02d}"
    return v.strip() if isinstance(v, str) else v


class CosSettings(Params):
    """Where the files go. Without SecretId/SecretKey the execution role's credentials are used."""

    # Validated even when absent, so that SecretKey's check sees a SecretId given alone.
    SecretId: Optional[SecretStr] = Field(default=None, validate_default=True)
    SecretKey: Optional[SecretStr] = Field(default=None, validate_default=True)
    Region: str = Field(min_length=1)
    Bucket: str = Field(min_length=1)
    Path: str = Field(min_length=1, max_length=512)

    @field_validator("SecretId", "SecretKey", mode="after")
    @classmethod
    def _remember_secret(cls, v: Optional[SecretStr]) -> Optional[SecretStr]:
        if v is not None:
            redact_value(v.get_secret_value())
            if not v.get_secret_value():
                return None
        return v

    @field_validator("SecretKey", mode="after")
    @classmethod
    def _pair(cls, v: Optional[SecretStr], info: ValidationInfo) -> Optional[SecretStr]:
        has_id = info.data.get("SecretId") is not None
        if "SecretId" in info.data and has_id != (v is not None):
            raise ValueError("is required with SecretId: give both or neither" if has_id else
                             "needs SecretId as well: give both or neither")
        return v

    @field_validator("Region", mode="after")
    @classmethod
    def _region(cls, v: str) -> str:
        if not _REGION.match(v):
            raise ValueError("must be a COS region such as ap-guangzhou")
        return v

    @field_validator("Bucket", mode="after")
    @classmethod
    def _bucket(cls, v: str) -> str:
        if not _BUCKET.match(v):
            raise ValueError("must be a COS bucket name such as test-1250000000 "
                             "(lower-case letters, digits and hyphens)")
        return v

    @field_validator("Path", mode="after")
    @classmethod
    def _path(cls, v: str) -> str:
        problem = path_problem(v)  # the rule object_key applies at upload
        if problem:
            raise ValueError(problem)
        return v

    @property
    def prefix(self) -> str:
        """The key prefix: "/trtc/" -> "trtc", "/" -> ""."""
        return self.Path.strip("/")


class RecordParams(RoomMember):
    """One record_stream request. Secrets are SecretStr: their repr never shows them."""

    # --- the seed's parameters (SdkAppId, RoomId, StrRoomId, UserId, UserSig: RoomMember's) ---
    CosConfig: CosSettings
    Callback: Optional[str] = Field(default=None, max_length=2048)
    Mode: Literal["00", "01", "02"] = MODE_MP3

    # --- extensions (named after TRTC's CreateCloudRecording where one exists) ---
    MaxIdleTime: int = Field(default=300, ge=1, le=86_400)  # seconds with no anchor in the room
    MaxDuration: Optional[int] = Field(default=None, ge=1, le=86_400)  # seconds
    SubscribeUserIds: Optional[list[str]] = None
    UnsubscribeUserIds: Optional[list[str]] = None
    # Minutes, as TRTC's; fractions are accepted so that a split can be short.
    MaxMediaFileDuration: Optional[float] = Field(default=None, gt=0, le=1440)
    # "mp4" (one file per anchor stay, as the seed), "hls" (playlist + segments), "hls+mp4".
    OutputFormat: OutputFormatField = Field(default="mp4", validate_default=True)
    # Seconds of media per segment: what is at risk when a run dies, and HLS's segment length.
    SegmentDuration: int = Field(default=int(DEFAULT_SEGMENT_S), ge=MIN_SEGMENT_S, le=MAX_SEGMENT_S)
    AudioChannels: int = Field(default=1, ge=1, le=2)  # 1 mono, 2 stereo (MP3 / AAC)
    # --- lifecycle (every asynchronous function): events while it runs, idempotent starts ---
    EventCallback: Optional[str] = Field(default=None, max_length=2048)
    EventVerbose: bool = False  # segment_uploaded events too
    # Kept in the state bucket (RECORD_STATE_BUCKET) for 24 h, created once.
    IdempotencyKey: Optional[str] = Field(default=None, max_length=MAX_IDEMPOTENCY_KEY)

    # --- issue 21: slices, snapshots and a trimmed copy (named after CreateCloudSliceTask) ---
    SliceAudio: Optional[int] = Field(default=None, ge=15, le=60)  # seconds per audio slice
    # "wav": 16 kHz 16-bit PCM, as speech APIs take it (lossless, no encoder); "mp3": 8x smaller
    SliceAudioFormat: Literal["wav", "mp3"] = "wav"
    SliceVideo: Optional[int] = Field(default=None, ge=5, le=60)  # seconds between snapshots
    SliceCallback: Optional[str] = Field(default=None, max_length=2048)  # each slice/snapshot POSTed
    RemoveSilence: Optional[int] = Field(default=None, ge=1, le=60)  # silences longer than this are cut

    @field_validator("Callback", "SliceCallback", mode="after")
    @classmethod
    def _callback(cls, v: Optional[str]) -> Optional[str]:
        return callback_url(v)

    @field_validator("EventCallback", mode="after")
    @classmethod
    def _event_callback(cls, v: Optional[str]) -> Optional[str]:
        return callback_url(v)

    @field_validator("IdempotencyKey", mode="after")
    @classmethod
    def _idempotency_key(cls, v: Optional[str]) -> Optional[str]:
        return state_bucket_key(v)

    @field_validator("Mode", mode="before")
    @classmethod
    def _mode_spelling(cls, v: Any) -> Any:
        return MODE_MP3 if v is None or v == "" else _mode(v)

    @field_validator("SliceAudioFormat", mode="before")
    @classmethod
    def _slice_audio_format(cls, v: Any) -> Any:
        return "wav" if v is None or v == "" else v.lower() if isinstance(v, str) else v

    @field_validator("OutputFormat", mode="before")
    @classmethod
    def _output_format(cls, v: Any) -> Any:
        try:
            return output_format(v)
        except ValueError:  # the error names the field and shows the value already
            raise ValueError(OUTPUT_FORMAT_RULE) from None

    @field_validator("SubscribeUserIds", "UnsubscribeUserIds", mode="before")
    @classmethod
    def _user_list(cls, v: Any) -> Any:
        return comma_list(v)

    @field_validator("SubscribeUserIds", "UnsubscribeUserIds", mode="after")
    @classmethod
    def _user_list_ids(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        return user_ids(v)

    def records(self, user_id: str) -> bool:
        """Whether an anchor is recorded: everyone but the recorder, filtered by the two lists."""
        if user_id == self.UserId:
            return False
        if self.SubscribeUserIds and user_id not in self.SubscribeUserIds:
            return False
        return not (self.UnsubscribeUserIds and user_id in self.UnsubscribeUserIds)

    @property
    def max_file_seconds(self) -> Optional[float]:
        return None if self.MaxMediaFileDuration is None else self.MaxMediaFileDuration * 60.0
