from django.urls import path

from . import exposure_api, flag_api, views

urlpatterns = [
    path("assignments", views.AssignmentsView.as_view(), name="assignments"),
    path(
        "experiments/<str:key>/assignment",
        views.ExperimentAssignmentView.as_view(),
        name="experiment-assignment",
    ),
    path("config", views.ConfigView.as_view(), name="assignment-config"),
    path("exposures", exposure_api.ExposureBatchView.as_view(), name="exposures"),
    # Before any "flags/<key>" pattern of the definitions API.
    path("flags/evaluate", flag_api.FlagEvaluateView.as_view(), name="flags-evaluate"),
]
