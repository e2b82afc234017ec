"""URLs for the HTTP benchmark: the real API plus a bare Django view returning constant JSON."""
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from config.urls import urlpatterns as real_urlpatterns

_BODY = b'{"unit_id":"u-1","assignments":[{"experiment":"e","variant":"control","in_experiment":true}]}'


@csrf_exempt
def bare(request):
    """The yardstick: same middleware, no DRF, no work (accepts the same POST as the API)."""
    return HttpResponse(_BODY, content_type="application/json")


urlpatterns = [path("bench/bare", bare), *real_urlpatterns]
