"""Sending one alert over one channel: signed webhook, Slack incoming webhook, email."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email

from . import signing

TIMEOUT_SECONDS = 5


class DeliveryError(Exception):
    """The endpoint refused or could not be reached; ``status`` is its HTTP code if it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def validate_target(channel: str, target: str) -> None:
    """http(s) URLs only for webhooks and Slack (no file:, gopher:, ...), an address for email.

    This is not full SSRF protection (an http URL may still point inside the network):
    production should restrict the workers' egress (see docs/operations.md).
    """
    if channel == "email":
        try:
            validate_email(target)
        except ValidationError as exc:
            raise ValidationError({"target": "Enter a valid email address."}) from exc
        return
    parts = urlsplit(target or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError({"target": "Enter an http:// or https:// URL."})


def body_bytes(payload: dict[str, Any]) -> bytes:
    """The exact bytes sent and signed (compact, sorted keys)."""
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def slack_message(payload: dict[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook format: a ``text`` fallback and ``blocks`` to display."""
    title = f"{payload['title']} - {payload['experiment']}"
    lines = [f"*{title}*", payload.get("message") or ""]
    if payload.get("action"):
        lines.append(f"Action taken: {payload['action']}")
    return {
        "text": title,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(x for x in lines if x)}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": f"condition `{payload['condition']}` at {payload['fired_at']}"},
            ]},
        ],
    }


def _post(url: str, data: bytes, headers: dict[str, str]) -> int:
    validate_target("webhook", url)
    try:
        response = requests.post(url, data=data, headers=headers, timeout=TIMEOUT_SECONDS, allow_redirects=False)
    except requests.RequestException as exc:
        raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
    if not 200 <= response.status_code < 300:
        raise DeliveryError(f"HTTP {response.status_code}: {response.text[:200]}", response.status_code)
    return response.status_code


def send(channel: str, target: str, secret: str, payload: dict[str, Any]) -> int | None:
    """Send ``payload``; returns the HTTP status (None for email) or raises DeliveryError."""
    if channel == "webhook":
        body = body_bytes(payload)
        headers = {"Content-Type": "application/json", signing.HEADER: signing.sign(secret, body),
                   "User-Agent": "experimentation-platform-alerts/1"}
        return _post(target, body, headers)
    if channel == "slack":
        return _post(target, json.dumps(slack_message(payload)).encode(), {"Content-Type": "application/json"})
    if channel == "email":
        validate_target("email", target)
        text = "\n\n".join(x for x in (payload.get("message"), f"Action taken: {payload['action']}"
                                        if payload.get("action") else "", json.dumps(payload, indent=2)) if x)
        try:
            send_mail(f"[experiments] {payload['title']}: {payload['experiment']}", text,
                      settings.DEFAULT_FROM_EMAIL, [target])
        except Exception as exc:  # SMTP down, refused, ...
            raise DeliveryError(f"{type(exc).__name__}: {exc}") from exc
        return None
    raise DeliveryError(f"unknown channel {channel!r}")
