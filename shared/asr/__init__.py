"""Tencent's real-time speech recognition, from the functions' side: the wire (wire), one
connection (client), and one anchor's paced, reconnecting stream (stream)."""
from __future__ import annotations

from .client import AsrConnection, AsrCredentials, AsrError, AsrOptions
from .stream import AnchorStream, Sentence

__all__ = ["AsrConnection", "AsrCredentials", "AsrError", "AsrOptions", "AnchorStream", "Sentence"]
