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
    path("api/v1/", include("assignment.urls")),  # first: the hot path resolves fastest
    path("api/v1/", include("experiments.urls")),
    path("api/v1/", include("analysis.urls")),
    path("", include("analysis.pages")),
]

handler400 = "access.exceptions.json_400_or_page"
handler404 = "access.exceptions.json_404_or_page"
handler500 = "access.exceptions.json_500_or_page"
