"""``Authorization: Api-Key <key>`` authentication for the REST API."""
from __future__ import annotations

from rest_framework import authentication, exceptions

from .keycache import KeyRecord, lookup

KEYWORD = "Api-Key"


class APIKeyUser:
    """The request's principal: a key, not a person. Quacks enough like a user for DRF."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False

    def __init__(self, record: KeyRecord) -> None:
        self.key = record
        self.scope = record.scope
        self.environment = record.environment
        self.pk = self.id = record.prefix

    def __str__(self) -> str:
        return f"api-key:{self.key.prefix} ({self.key.name[:24]})"


class APIKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        keyword, _, raw = header.partition(" ")
        if keyword != KEYWORD or not raw.strip():
            raise exceptions.AuthenticationFailed("Authorization header must be 'Api-Key <key>'.")
        record = lookup(raw.strip())
        if record is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if record.revoked:
            raise exceptions.AuthenticationFailed("This API key has been revoked.")
        if record.expired:
            raise exceptions.AuthenticationFailed("This API key has expired.")
        return APIKeyUser(record), record

    def authenticate_header(self, request) -> str:
        # Makes DRF answer 401 (not 403) when credentials are missing or wrong.
        return KEYWORD
