"""Errors with API 3.0 codes; the server turns them into {"Response": {"Error": ..., "RequestId": ...}}.
A missing or bad parameter's error is made by the parser (responses.CloudApiResponse)."""
from __future__ import annotations


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 200):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        # API 3.0 answers errors with HTTP 200 and the error in the body, as the real service does.
        self.status = status

