"""Flags, audiences and environments API: thin views over the services. Analysts read, admins write."""
from __future__ import annotations

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, status
from rest_framework.response import Response
from rest_framework.views import APIView

from access.models import Environment
from access.permissions import IsAnalyst, ReadAnalystWriteAdmin

from . import audiences, environments, flag_audit, flags
from .models import Experiment
from .models_flags import Audience, Flag
from .serializers import ExperimentHistoryEntrySerializer
from .serializers_flags import (
    AudienceSerializer,
    AudienceUpdateSerializer,
    EnvironmentSerializer,
    ExperimentAudiencesSerializer,
    ExperimentEnvironmentSerializer,
    FlagEnvironmentSerializer,
    FlagOutputSerializer,
    FlagSerializer,
    FlagUpdateSerializer,
)
from .views import actor_of

_BAD = OpenApiResponse(description="Invalid input; each key names a field and lists its errors.")


def _flag_body(flag: Flag) -> dict:
    return flags.flag_as_dict(flags.flags_queryset().get(pk=flag.pk))


def _service_data(validated: dict) -> dict:
    data = dict(validated)
    if "environments" in data:
        data["environments"] = {k: dict(v) for k, v in data["environments"].items()}
    return data


class FlagListCreate(APIView):
    """Feature flags with their rules per environment."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses=FlagOutputSerializer(many=True))
    def get(self, request):
        return Response([flags.flag_as_dict(f) for f in flags.flags_queryset()])

    @extend_schema(request=FlagSerializer, responses={201: FlagOutputSerializer, 400: _BAD})
    def post(self, request):
        serializer = FlagSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        flag = flags.create_flag(_service_data(serializer.validated_data), actor=actor_of(request))
        return Response(_flag_body(flag), status=status.HTTP_201_CREATED)


class FlagDetail(APIView):
    """One flag. PATCH changes name, description, type, default and (optionally) environments."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses=FlagOutputSerializer)
    def get(self, request, key: str):
        return Response(flags.flag_as_dict(get_object_or_404(flags.flags_queryset(), key=key)))

    @extend_schema(request=FlagUpdateSerializer, responses={200: FlagOutputSerializer, 400: _BAD})
    def patch(self, request, key: str):
        flag = get_object_or_404(Flag, key=key)
        serializer = FlagUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        flags.update_flag(flag, _service_data(serializer.validated_data), actor=actor_of(request))
        return Response(_flag_body(flag))

    @extend_schema(responses={204: None})
    def delete(self, request, key: str):
        flags.delete_flag(get_object_or_404(Flag, key=key), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class FlagEnvironmentView(APIView):
    """PUT /flags/<key>/environments/<environment>: switch the flag and/or replace its rule list
    there (first match wins; ramp a rollout by sending it back, with its id, at a higher percent)."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(request=FlagEnvironmentSerializer, responses={200: FlagOutputSerializer, 400: _BAD})
    def put(self, request, key: str, environment: str):
        flag = get_object_or_404(Flag, key=key)
        serializer = FlagEnvironmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        flags.set_environment(flag, environment, **serializer.validated_data, actor=actor_of(request))
        return Response(_flag_body(flag))


class FlagHistory(APIView):
    """GET /flags/<key>/history: every change to the flag, its rules and their audiences."""

    permission_classes = [IsAnalyst]

    @extend_schema(responses=ExperimentHistoryEntrySerializer(many=True))
    def get(self, request, key: str):
        flag = get_object_or_404(Flag, key=key)
        return Response(ExperimentHistoryEntrySerializer(flag_audit.flag_history(flag), many=True).data)


class AudienceListCreate(generics.ListCreateAPIView):
    """Saved audiences (named targeting conditions) and where each is used."""

    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = AudienceSerializer
    queryset = Audience.objects.all()

    def perform_create(self, serializer):
        serializer.instance = audiences.save_audience(Audience(), serializer.validated_data, actor=actor_of(self.request))


class AudienceDetail(APIView):
    """One audience. PATCH is refused for conditions while a running or paused experiment uses it."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses=AudienceSerializer)
    def get(self, request, key: str):
        return Response(AudienceSerializer(get_object_or_404(Audience, key=key)).data)

    @extend_schema(request=AudienceUpdateSerializer, responses={200: AudienceSerializer, 400: _BAD})
    def patch(self, request, key: str):
        audience = get_object_or_404(Audience, key=key)
        serializer = AudienceUpdateSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        audience = audiences.save_audience(audience, serializer.validated_data, actor=actor_of(request))
        return Response(AudienceSerializer(audience).data)

    @extend_schema(responses={204: None, 400: _BAD})
    def delete(self, request, key: str):
        audiences.delete_audience(get_object_or_404(Audience, key=key), actor=actor_of(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class AudienceHistory(APIView):
    permission_classes = [IsAnalyst]

    @extend_schema(responses=ExperimentHistoryEntrySerializer(many=True))
    def get(self, request, key: str):
        audience = get_object_or_404(Audience, key=key)
        return Response(ExperimentHistoryEntrySerializer(flag_audit.audience_history(audience), many=True).data)


class EnvironmentListCreate(generics.ListCreateAPIView):
    """Environments; each API key belongs to one and sees only its configuration."""

    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = EnvironmentSerializer
    queryset = Environment.objects.all()

    def perform_create(self, serializer):
        serializer.instance = environments.save_environment(
            Environment(), serializer.validated_data, actor=actor_of(self.request))


class EnvironmentDetail(generics.RetrieveAPIView):
    permission_classes = [ReadAnalystWriteAdmin]
    serializer_class = EnvironmentSerializer
    queryset = Environment.objects.all()
    lookup_field = "key"


class ExperimentAudiences(APIView):
    """GET/PUT /experiments/<key>/audiences: the audiences its units must belong to (every one).
    Part of the analysis plan: a change is refused once the experiment has started."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses=ExperimentAudiencesSerializer)
    def get(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        return Response({"audiences": audiences.experiment_audience_keys(experiment)})

    @extend_schema(request=ExperimentAudiencesSerializer, responses={200: ExperimentAudiencesSerializer, 400: _BAD})
    def put(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        serializer = ExperimentAudiencesSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        keys = audiences.set_experiment_audiences(
            experiment, serializer.validated_data["audiences"], actor=actor_of(request))
        return Response({"audiences": keys})


class ExperimentEnvironmentView(APIView):
    """PUT /experiments/<key>/environments/<environment>: switch the experiment on or off there
    (off: every unit gets the control, reason disabled_in_environment)."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(request=ExperimentEnvironmentSerializer,
                   responses={200: ExperimentEnvironmentSerializer(many=False), 400: _BAD})
    def put(self, request, key: str, environment: str):
        experiment = get_object_or_404(Experiment, key=key)
        serializer = ExperimentEnvironmentSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        environments.set_experiment_enabled(
            experiment, environment, serializer.validated_data["enabled"], actor=actor_of(request))
        return Response({"enabled": serializer.validated_data["enabled"],
                         "environments": environments.experiment_states(experiment)})
