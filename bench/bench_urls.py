"""URLs for the HTTP benchmark: the real API plus yardsticks returning constant JSON.

``bench/nomw`` is the bare view served without any middleware (``bench/bench_wsgi.py``);

``bench/bare`` is a plain Django view; ``bench/drf`` is a DRF view with the same
authentication and permission as the assignment API, to show the framework's own floor.
"""
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from rest_framework.views import APIView

from access.permissions import IsClient
from assignment.views import JSONOnlyNegotiation
from config.urls import urlpatterns as real_urlpatterns

_BODY = b'{"unit_id":"u-1","assignments":[{"experiment":"e","variant":"control","in_experiment":true}]}'


@csrf_exempt
def bare(request):
    """The yardstick: same middleware, no DRF, no work (reads the same POST body as the API)."""
    request.body  # noqa: B018 -- consume the body as any POST view does
    return HttpResponse(_BODY, content_type="application/json")


class DRFFloor(APIView):
    permission_classes = [IsClient]
    content_negotiation_class = JSONOnlyNegotiation

    def post(self, request):
        request._request.body  # noqa: B018
        return HttpResponse(_BODY, content_type="application/json")


# Last, so resolving them walks the same URL list as the API routes do (a fair yardstick).
urlpatterns = [*real_urlpatterns, path("bench/bare", bare), path("bench/nomw", bare),
               path("bench/drf", DRFFloor.as_view())]
