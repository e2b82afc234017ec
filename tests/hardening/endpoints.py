"""Discover every URL the project serves from Django's URL resolver, so new endpoints are covered
by the access tests the day they land (and fail them until they are added to the tables)."""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

API_PREFIX = "/api/v1/"
_METHODS = ("get", "post", "put", "patch", "delete")
_CONVERTER = re.compile(r"<(?:\w+:)?(\w+)>")


@dataclass(frozen=True)
class Route:
    """One URL pattern: its readable template, its reversible name and the view behind it."""

    template: str  # "/api/v1/experiments/{key}/start" or "/admin/^(?P<app_label>...)$"
    name: str | None  # "admin:experiments_experiment_change", for reverse()
    groups: tuple[str, ...]  # the parameter names
    callback: object

    @property
    def view_class(self):
        return getattr(self.callback, "cls", None) or getattr(self.callback, "view_class", None)

    @property
    def is_api(self) -> bool:
        return self.template.startswith(API_PREFIX)


def _walk(patterns, prefix: str, namespace: str, groups: tuple[str, ...]) -> Iterator[Route]:
    for entry in patterns:
        pattern = entry.pattern
        text = str(pattern)
        found = tuple(pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _walk(entry.url_patterns, prefix + text, ns, groups + found)
        elif isinstance(entry, URLPattern):
            name = f"{namespace}{entry.name}" if entry.name else None
            yield Route("/" + prefix + text, name, groups + found, entry.callback)


def all_routes() -> list[Route]:
    return list(_walk(get_resolver().url_patterns, "", "", ()))


def api_operations() -> list[tuple[str, str]]:
    """``(METHOD, "/api/v1/path/{param}")`` for every method of every API view."""
    operations = []
    for route in all_routes():
        if not route.is_api:
            continue
        view = route.view_class
        allowed = getattr(view, "http_method_names", _METHODS)
        template = _CONVERTER.sub(r"{\1}", route.template)
        for method in _METHODS:
            if method in allowed and hasattr(view, method):
                operations.append((method.upper(), template))
    return sorted(set(operations))


def page_routes() -> list[Route]:
    """Every non-API route (admin, report pages, API docs)."""
    return [r for r in all_routes() if not r.is_api]
