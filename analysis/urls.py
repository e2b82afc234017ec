"""REST routes of the analysis app, mounted under /api/v1/."""
from . import event_api, report_api

urlpatterns = [*event_api.urlpatterns, *report_api.urlpatterns]
