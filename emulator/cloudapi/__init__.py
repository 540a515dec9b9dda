"""Tencent Cloud API 3.0 on loopback: TC3-HMAC-SHA256 checked, errors in API 3.0 shape.

Each emulated service registers its actions (`CloudApi.register`, from its urls.py) and reads their
parameters through one parser (`CloudApiResponse`, responses.py); the real tencentcloud-sdk-python
clients reach them through HttpProfile(endpoint="127.0.0.1:PORT", protocol="http").
"""
from .exceptions import ApiError
from .responses import CloudApiResponse, action_handlers
from .server import CloudApi

__all__ = ["ApiError", "CloudApi", "CloudApiResponse", "action_handlers"]
