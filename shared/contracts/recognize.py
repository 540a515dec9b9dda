"""recognize_stream's parameters: the template's names and types ("live room real-time speech
recognition": SdkAppId, RoomId / StrRoomId, UserId, UserSig, Callback), plus the extensions.

Everything is checked before the room is entered; `shared.gateway` turns the errors into one
sentence naming every bad field (a 400 through the gateway).
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, SecretStr, field_validator

from shared.asr.client import AsrCredentials, AsrOptions
from shared.contracts.record import CosSettings
from shared.secrets import redact_value

from .fields import Params
from .lifecycle import MAX_IDEMPOTENCY_KEY, callback_url, state_bucket_key
from .member import RoomMember, comma_list, user_ids

# The engines of Tencent's real-time recognition that take 16 kHz audio (what the function sends).
Engine = Literal["16k_zh", "16k_en", "16k_zh_edu", "16k_en_edu", "16k_zh_en", "16k_zh_large",
                          "16k_zh_dialect", "16k_multi_lang", "16k_ca", "16k_ja", "16k_ko", "16k_zh_medical"]
MIN_VAD_SILENCE_MS, MAX_VAD_SILENCE_MS = 240, 2000
MAX_HOTWORDS = 128
MAX_HOTWORD_CHARS = 30
MAX_TARGETS = 50
_HOTWORD = re.compile(r"^[^|,]{1,30}$")


class AsrKeys(Params):
    """The classic (v2) endpoint's keys: the Tencent Cloud AppId and an API key pair."""

    AppId: int = Field(gt=0, lt=1 << 40)
    SecretId: SecretStr
    SecretKey: SecretStr

    @field_validator("SecretId", "SecretKey", mode="after")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        redact_value(v.get_secret_value())
        if not v.get_secret_value().strip():
            raise ValueError("must not be empty")
        return v


class RecognizeParams(RoomMember):
    """One recognize_stream request. Secrets are SecretStr: their repr never shows them."""

    # --- the template's parameters (SdkAppId, RoomId, StrRoomId, UserId, UserSig: RoomMember's) ---
    Callback: Optional[str] = Field(default=None, max_length=2048)

    # --- extensions ---
    TargetUserIds: Optional[list[str]] = Field(default=None, max_length=MAX_TARGETS)
    EngineModelType: Engine = "16k_zh"
    HotwordList: Optional[list[str]] = Field(default=None, max_length=MAX_HOTWORDS)
    VadSilenceTime: int = Field(default=1000, ge=MIN_VAD_SILENCE_MS, le=MAX_VAD_SILENCE_MS)  # ms
    Partial: bool = False
    MaxIdleTime: int = Field(default=300, ge=1, le=86_400)  # seconds with no anchor in the room
    MaxDuration: Optional[int] = Field(default=None, ge=1, le=86_400)  # seconds
    CosConfig: Optional[CosSettings] = None
    AsrConfig: Optional[AsrKeys] = None
    # --- lifecycle (every asynchronous function): events while it runs, idempotent starts ---
    EventCallback: Optional[str] = Field(default=None, max_length=2048)
    EventVerbose: bool = False
    # Kept in the deployment's state bucket (RECORD_STATE_BUCKET) for 24 h, created once.
    IdempotencyKey: Optional[str] = Field(default=None, max_length=MAX_IDEMPOTENCY_KEY)

    @field_validator("EventCallback", mode="after")
    @classmethod
    def _event_callback(cls, v: Optional[str]) -> Optional[str]:
        return callback_url(v)

    @field_validator("IdempotencyKey", mode="after")
    @classmethod
    def _idempotency_key(cls, v: Optional[str]) -> Optional[str]:
        return state_bucket_key(v)

    @field_validator("Callback", mode="after")
    @classmethod
    def _callback(cls, v: Optional[str]) -> Optional[str]:
        return callback_url(v)

    @field_validator("TargetUserIds", "HotwordList", mode="before")
    @classmethod
    def _lists(cls, v: Any) -> Any:
        return comma_list(v)

    @field_validator("TargetUserIds", mode="after")
    @classmethod
    def _targets(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if user_ids(v) is not None and not v:
            raise ValueError("is empty: leave it out to recognise every anchor")
        return v

    @field_validator("HotwordList", mode="after")
    @classmethod
    def _hotwords(cls, v: Optional[list[str]]) -> Optional[list[str]]:
        if v is not None:
            words = [w.strip() for w in v]
            bad = [w for w in words if not _HOTWORD.match(w)]
            if bad:
                raise ValueError(f"each hotword is 1..{MAX_HOTWORD_CHARS} characters without '|' or ',': "
                                 f"{', '.join(repr(w) for w in bad[:5])}")
            v = list(dict.fromkeys(words))
        return v

    def recognises(self, user_id: str) -> bool:
        """Whether an anchor is recognised: TargetUserIds, else everyone but the recogniser."""
        if user_id == self.UserId:
            return False
        return not self.TargetUserIds or user_id in self.TargetUserIds

    def asr_credentials(self) -> AsrCredentials:
        """v2 with AsrConfig's keys, else v3 with the app and the recogniser's UserSig."""
        keys = self.AsrConfig
        if keys is not None:
            return AsrCredentials(self.SdkAppId, self.UserSig.get_secret_value(), app_id=keys.AppId,
                                  secret_id=keys.SecretId.get_secret_value(),
                                  secret_key=keys.SecretKey.get_secret_value())
        return AsrCredentials(self.SdkAppId, self.UserSig.get_secret_value())

    def asr_options(self) -> AsrOptions:
        return AsrOptions(self.EngineModelType, self.VadSilenceTime, tuple(self.HotwordList or ()))
