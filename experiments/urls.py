from django.urls import path

from . import views, views_approvals, views_flags

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
    # feature flags, saved audiences, environments (POST flags/evaluate is assignment's, matched first)
    path("flags", views_flags.FlagListCreate.as_view(), name="flag-list"),
    path("flags/<slug:key>", views_flags.FlagDetail.as_view(), name="flag-detail"),
    path("flags/<slug:key>/environments/<slug:environment>", views_flags.FlagEnvironmentView.as_view(),
         name="flag-environment"),
    path("flags/<slug:key>/history", views_flags.FlagHistory.as_view(), name="flag-history"),
    path("audiences", views_flags.AudienceListCreate.as_view(), name="audience-list"),
    path("audiences/<slug:key>", views_flags.AudienceDetail.as_view(), name="audience-detail"),
    path("audiences/<slug:key>/history", views_flags.AudienceHistory.as_view(), name="audience-history"),
    path("environments", views_flags.EnvironmentListCreate.as_view(), name="environment-list"),
    path("environments/<slug:key>", views_flags.EnvironmentDetail.as_view(), name="environment-detail"),
    path("experiments/<slug:key>/audiences", views_flags.ExperimentAudiences.as_view(), name="experiment-audiences"),
    path("experiments/<slug:key>/environments/<slug:environment>", views_flags.ExperimentEnvironmentView.as_view(),
         name="experiment-environment"),
]
