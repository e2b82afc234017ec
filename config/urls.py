"""URLs: the admin, the REST API (v1), its OpenAPI schema and docs, and the report pages."""
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

admin.site.site_header = "Experimentation platform"
admin.site.site_title = "Experiments"
admin.site.index_title = "Define and run experiments"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("api/v1/", include("experiments.urls")),
]

for optional in ("assignment.urls", "analysis.urls"):
    # Apps add their routes as they land; the API is one namespace under /api/v1/.
    try:
        __import__(optional)
    except ModuleNotFoundError:
        continue
    urlpatterns.append(path("api/v1/", include(optional)))

try:
    __import__("analysis.pages")
    urlpatterns.append(path("", include("analysis.pages")))
except ModuleNotFoundError:
    pass

handler404 = "access.exceptions.json_404_or_page"
handler500 = "access.exceptions.json_500_or_page"
