"""The API's JSON renderer: DRF's, but a lone surrogate echoed from the input cannot make a 500.

Python's ``json`` module parses ``"\\ud800"`` into a lone surrogate, which UTF-8 cannot encode;
an error message that quotes such input (``'"\\ud800" is not a valid choice.'``) would crash the
renderer. Those rare bodies are rendered ASCII-escaped instead, which is still valid JSON.
"""
from __future__ import annotations

from rest_framework.renderers import JSONRenderer


class SafeJSONRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        try:
            return super().render(data, accepted_media_type, renderer_context)
        except UnicodeEncodeError:
            ascii_renderer = JSONRenderer()
            ascii_renderer.ensure_ascii = True
            return ascii_renderer.render(data, accepted_media_type, renderer_context)
