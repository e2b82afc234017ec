"""Admin pages that answer hostile query strings and JSON boxes with a message, never a 500.

``SafeAdminMixin`` goes first in the bases of every ``ModelAdmin`` and of inlines with JSON
fields; :func:`guard_registered_admins` (run when the access app is ready, after the admin has
imported every ``admin.py``) gives it to any registered admin that lacks it -- Django's user and
group admins, and whatever an app registers later. ``tests/hardening/test_admin_filters.py``
walks every registered changelist:

* **Date filters.** ``?computed_at__year=99999999999999999999`` overflows inside Django's date
  hierarchy (``OverflowError``) and ``?created_at__year=0`` inside the year lookup
  (``ValueError``), both 500s. Every date-part lookup (``__year``, ``__month``, ``__day`` ...)
  must be a whole number in its range; otherwise it is dropped with a message saying why.
* **Any other filter** that fails only when the query runs (a value the database cannot
  compare) is caught while the page renders: the filters are dropped, with a message.
* **JSON fields** (variant payloads, rule values) go through ``access.jsonsafety``: NaN and
  Infinity literals, nesting beyond 32 levels (which made Django's own JSON field raise
  ``RecursionError``) and non-finite numbers are field errors.
"""
from __future__ import annotations

import contextlib
import logging

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db import DatabaseError, connection, models, transaction
from django.forms.fields import InvalidJSONInput
from django.http import HttpResponseRedirect

from . import jsonsafety

logger = logging.getLogger(__name__)

#: Date-part lookups and the whole numbers each accepts.
DATE_PARTS = {
    "year": (1, 9999), "iso_year": (1, 9999), "month": (1, 12), "day": (1, 31),
    "week": (1, 53), "week_day": (1, 7), "iso_week_day": (1, 7), "quarter": (1, 4),
    "hour": (0, 23), "minute": (0, 59), "second": (0, 59),
}


def date_part_problems(params) -> dict[str, str]:
    """Query parameters naming a date part (``<field>__year`` ...) whose value is not a whole
    number in range, with the message to show."""
    problems = {}
    for name in params:
        part = name.rsplit("__", 1)[-1] if "__" in name else ""
        if part not in DATE_PARTS:
            continue
        low, high = DATE_PARTS[part]
        for value in params.getlist(name):
            text = value.strip()
            if not (text.lstrip("-").isdecimal() and len(text) <= 6 and low <= int(text) <= high):
                shown = value if len(value) <= 24 else value[:24] + "..."
                problems[name] = (
                    f"Ignored the filter {name}={shown!r}: a {part.replace('_', ' ')} is a whole "
                    f"number from {low} to {high}."
                )
                break
    return problems


class SafeJSONFormField(forms.JSONField):
    """Django's JSON form field, strict: what ``access.jsonsafety`` refuses is a field error."""

    def to_python(self, value):
        if isinstance(value, str) and not self.disabled and value not in self.empty_values:
            try:
                jsonsafety.loads(value)
            except ValueError as exc:
                raise ValidationError(f"Enter valid JSON: {exc}", code="invalid") from None
        converted = super().to_python(value)
        problem = None if self.disabled else jsonsafety.describe(converted)
        if problem:
            raise ValidationError(problem, code="invalid")
        return converted

    def bound_data(self, data, initial):
        if isinstance(data, str) and not self.disabled:
            try:
                jsonsafety.loads(data)
            except ValueError:
                return InvalidJSONInput(data)
        return super().bound_data(data, initial)


class SafeAdminMixin:
    """For ``ModelAdmin`` and inline classes; see the module docstring."""

    formfield_overrides = {models.JSONField: {"form_class": SafeJSONFormField}}

    def changelist_view(self, request, extra_context=None):
        if request.method != "GET" or not request.GET:
            return super().changelist_view(request, extra_context)
        problems = date_part_problems(request.GET)
        if problems:
            for message in problems.values():
                messages.error(request, message)
            kept = request.GET.copy()
            for name in problems:
                kept.pop(name)
            return HttpResponseRedirect(request.path + (f"?{kept.urlencode()}" if kept else ""))
        # Inside a transaction (tests, ATOMIC_REQUESTS) a savepoint keeps a refused query from
        # aborting it on PostgreSQL; in autocommit there is nothing to protect, and on SQLite an
        # atomic block would take the write lock for a read.
        guard = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
        try:
            with guard:
                response = super().changelist_view(request, extra_context)
                if callable(getattr(response, "render", None)) and not response.is_rendered:
                    response.render()  # the query runs here: catch its failure too
        except (ValueError, OverflowError, ValidationError, DatabaseError) as exc:
            logger.warning("admin changelist filter refused: %s", type(exc).__name__)
            messages.error(request, "The filters in the address could not be applied, so they were removed.")
            return HttpResponseRedirect(request.path)
        return response


def guard_registered_admins(site=None) -> list[str]:
    """Re-register every admin of ``site`` that lacks :class:`SafeAdminMixin` with a subclass
    that has it (same options, same behaviour otherwise); return the models so guarded."""
    from django.contrib import admin

    site = site or admin.site
    guarded = []
    for model, model_admin in list(site._registry.items()):
        if isinstance(model_admin, SafeAdminMixin):
            continue
        cls = type(model_admin)
        safe = type(cls.__name__, (SafeAdminMixin, cls), {"__module__": cls.__module__, "__doc__": cls.__doc__})
        site.unregister(model)
        site.register(model, safe)
        guarded.append(model._meta.label)
    return guarded
