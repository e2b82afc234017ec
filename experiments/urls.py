from django.urls import path

from . import views, views_approvals

urlpatterns = [
    path("metrics", views.MetricListCreate.as_view(), name="metric-list"),
    path("metrics/<slug:key>", views.MetricDetail.as_view(), name="metric-detail"),
    path("layers", views.LayerListCreate.as_view(), name="layer-list"),
    path("layers/<slug:key>", views.LayerDetail.as_view(), name="layer-detail"),
    path("experiments", views.ExperimentListCreate.as_view(), name="experiment-list"),
    path("experiments/<slug:key>", views.ExperimentDetail.as_view(), name="experiment-detail"),
    path("experiments/<slug:key>/history", views.ExperimentHistory.as_view(), name="experiment-history"),
    *[
        path(
            f"experiments/<slug:key>/{action}",
            views.ExperimentTransition.as_view(action=action),
            name=f"experiment-{action}",
        )
        for action in ("start", "pause", "resume", "archive")
    ],
    path("experiments/<slug:key>/complete", views.ExperimentComplete.as_view(), name="experiment-complete"),
    path("experiments/<slug:key>/approvals", views_approvals.ExperimentApprovals.as_view(), name="experiment-approvals"),
    *[
        path(f"approvals/<int:approval_id>/{decision}", views_approvals.ApprovalDecision.as_view(decision=decision),
             name=f"approval-{decision}")
        for decision in ("approve", "reject")
    ],
    path("experiments/<slug:key>/phases", views.ExperimentPhases.as_view(), name="experiment-phases"),
]
