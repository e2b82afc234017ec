"""Definitions API: thin views over ``experiments.services``."""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import IsAnalyst, ReadAnalystWriteAdmin

from . import approvals, audit, phases, services
from .governance import requires_approval
from .models import ApprovalRequest, Experiment, Layer, Metric
from .serializers import (
    CompleteSerializer,
    ExperimentHistoryEntrySerializer,
    ExperimentSerializer,
    ExperimentUpdateSerializer,
    LayerSerializer,
    MetricSerializer,
    PhaseCreateSerializer,
    PhaseSerializer,
)
from .views_approvals import ApprovalSerializer, _actor


def actor_of(request) -> str:
    return str(request.user)


class MetricListCreate(generics.ListCreateAPIView):
    """Reusable metrics. Analysts read, admins create."""

    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = MetricSerializer
    queryset = Metric.objects.all()

    def perform_create(self, serializer):
        serializer.instance = services.save_metric(Metric(), serializer.validated_data, actor=actor_of(self.request))


class MetricDetail(generics.RetrieveAPIView):
    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = MetricSerializer
    queryset = Metric.objects.all()
    lookup_field = "key"


class LayerListCreate(generics.ListCreateAPIView):
    """Layers (namespaces) whose experiments never share a unit."""

    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = LayerSerializer
    queryset = Layer.objects.all()

    def perform_create(self, serializer):
        serializer.instance = services.save_layer(Layer(), serializer.validated_data, actor=actor_of(self.request))


class LayerDetail(generics.RetrieveAPIView):
    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = LayerSerializer
    queryset = Layer.objects.all()
    lookup_field = "key"


def _experiments():
    return Experiment.objects.select_related("layer", "owner", "shipped_variant").prefetch_related(
        "variants", "experiment_metrics__metric", "targeting_rules"
    )


class ExperimentListCreate(generics.ListCreateAPIView):
    """Experiments. Created in one request with their variants, metrics and targeting."""

    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = ExperimentSerializer

    def get_queryset(self):
        qs = _experiments()
        status_filter = self.request.query_params.get("status")
        if status_filter:
            qs = qs.filter(status=status_filter)
        return qs

    def perform_create(self, serializer):
        serializer.instance = services.create_experiment(serializer.to_service_data(), actor=actor_of(self.request))


class ExperimentDetail(generics.RetrieveUpdateAPIView):
    """One experiment. PATCH changes what its status allows (see the invariants in the docs)."""

    permission_classes = [ReadAnalystWriteAdmin]
    lookup_field = "key"
    http_method_names = ["get", "patch", "head", "options"]

    def get_queryset(self):
        return _experiments()

    def get_serializer_class(self):
        return ExperimentUpdateSerializer if self.request.method == "PATCH" else ExperimentSerializer

    @extend_schema(request=ExperimentUpdateSerializer, responses=ExperimentSerializer)
    def patch(self, request, *args, **kwargs):
        return self.partial_update(request, *args, **kwargs)

    def perform_update(self, serializer):
        services.update_experiment(serializer.instance, serializer.to_service_data(), actor=actor_of(self.request))
        serializer.instance = _experiments().get(pk=serializer.instance.pk)


class ExperimentTransition(APIView):
    """POST /experiments/<key>/start|pause|resume|archive: no body (an empty object is fine)."""

    permission_classes = [ReadAnalystWriteAdmin]
    action: str = ""

    def options_for(self, body) -> dict:
        if body not in (None, {}, b"", ""):
            raise ValidationError({"detail": f"'{self.action}' takes no request body."})
        return {}

    @extend_schema(
        request=None,
        responses={200: ExperimentSerializer, 400: OpenApiResponse(description="Invalid transition or definition")},
    )
    def post(self, request, key: str):
        options = self.options_for(request.data)
        experiment = get_object_or_404(Experiment, key=key)
        services.TRANSITION_FUNCTIONS[self.action](experiment, actor=actor_of(request), **options)
        return Response(ExperimentSerializer(_experiments().get(pk=experiment.pk)).data, status=status.HTTP_200_OK)


class ExperimentComplete(ExperimentTransition):
    """POST /experiments/<key>/complete, optionally shipping a variant to every unit."""

    action = "complete"

    def options_for(self, body) -> dict:
        serializer = CompleteSerializer(data=body if body not in (None, b"", "") else {})
        serializer.is_valid(raise_exception=True)
        return {"shipped_variant": serializer.validated_data.get("shipped_variant") or None}

    @extend_schema(
        request=CompleteSerializer,
        responses={200: ExperimentSerializer, 400: OpenApiResponse(description="Invalid transition or definition")},
    )
    def post(self, request, key: str):
        return super().post(request, key)


class ExperimentHistory(APIView):
    """GET /experiments/<key>/history: who changed what (old -> new), when and why, newest first.

    Covers the experiment and its variants, metrics, targeting rules, overrides and layer.
    """

    permission_classes = [IsAnalyst]

    @extend_schema(responses=ExperimentHistoryEntrySerializer(many=True))
    def get(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        entries = audit.experiment_history(experiment)
        return Response(ExperimentHistoryEntrySerializer(entries, many=True).data)


class ExperimentPhases(APIView):
    """GET: the experiment's phases, oldest first. POST (admin): end the current phase and start
    the next one with a changed analysis plan (the only way to change a started experiment's plan)."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses={200: PhaseSerializer(many=True)})
    def get(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        return Response(PhaseSerializer(experiment.phases.select_related("experiment").order_by("number"), many=True).data)

    @extend_schema(
        request=PhaseCreateSerializer,
        responses={
            201: PhaseSerializer,
            202: OpenApiResponse(description="REQUIRE_APPROVAL: a new-phase approval request was filed "
                                             "(the approval; approving starts the phase)"),
            400: OpenApiResponse(description="Invalid change, nothing to change, or not running/paused"),
            409: OpenApiResponse(description="Another phase was started meanwhile (expected_phase)"),
        },
    )
    def post(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        serializer = PhaseCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        if requires_approval():  # four eyes: file the request; approving starts the phase as asked
            try:
                approval = approvals.request_approval(
                    experiment, ApprovalRequest.Action.NEW_PHASE, comment=data["reason"], **_actor(request),
                    phase_request={"changes": dict(data.get("changes") or {}), "rerandomize": data["rerandomize"],
                                   "reason": data["reason"]},
                )
            except DjangoPermissionDenied as e:
                raise PermissionDenied(str(e)) from None
            return Response(ApprovalSerializer(approval).data, status=status.HTTP_202_ACCEPTED)
        try:
            phase = phases.start_new_phase(
                experiment, dict(data.get("changes") or {}), rerandomize=data["rerandomize"],
                reason=data["reason"], actor=actor_of(request), expected_phase=data.get("expected_phase"),
            )
        except phases.PhaseConflict as exc:
            return Response(exc.message_dict, status=status.HTTP_409_CONFLICT)
        return Response(PhaseSerializer(phase).data, status=status.HTTP_201_CREATED)
