"""WSGI entry for bench/bench_assignment_http.py: the app, plus ``/bench/nomw`` served by a
Django handler with NO middleware (the yardstick issue 13 measures against).

The bare view still goes through Django's request handling (WSGIRequest, URL resolution,
HttpResponse); only the middleware chain is empty. Never used by the application.
"""
import os

from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.bench_settings")
app = get_wsgi_application()


class NoMiddlewareHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        self._middleware_chain = convert_exception_to_response(self._get_response)


bare = NoMiddlewareHandler()


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/bench/nomw":
        return bare(environ, start_response)
    return app(environ, start_response)
