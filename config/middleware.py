"""Browser-only middleware that steps aside for the JSON API.

Static files, sessions, authentication and messages do nothing for ``/api/v1/`` (API keys
authenticate, responses are JSON, never cookie-backed), yet they cost the assignment hot path a
good part of a bare request. Each class here is the Django (or WhiteNoise) middleware it
subclasses, except that for paths under ``settings.API_PATH_PREFIX`` it passes the request
straight on (none of them has a view hook). Subclasses, so the admin's system checks still find them, and every other path (admin, pages,
static files) is handled exactly as before. CORS, security headers, ``CommonMiddleware`` and the
history middleware (API writes keep their user) stay in front of the API, and so do Django's
own CSRF and clickjacking middleware: ``check --deploy`` looks for them by exact name, and they
cost little there (API views are ``csrf_exempt``; one header).
"""
from __future__ import annotations

from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware as _Auth
from django.contrib.messages.middleware import MessageMiddleware as _Messages
from django.contrib.sessions.middleware import SessionMiddleware as _Sessions
from django.http import HttpRequest
from whitenoise.middleware import WhiteNoiseMiddleware as _WhiteNoise


def is_api(request: HttpRequest) -> bool:
    """True for the JSON API, where browser-only middleware has nothing to do."""
    return request.path_info.startswith(settings.API_PATH_PREFIX)


class SkipOnAPI:
    """Mixin: pass API requests straight on to the next middleware or the view."""

    def __call__(self, request):
        if is_api(request):
            return self.get_response(request)
        return super().__call__(request)


class WhiteNoiseMiddleware(SkipOnAPI, _WhiteNoise):
    pass


class SessionMiddleware(SkipOnAPI, _Sessions):
    pass


class AuthenticationMiddleware(SkipOnAPI, _Auth):
    pass


class MessageMiddleware(SkipOnAPI, _Messages):
    pass
