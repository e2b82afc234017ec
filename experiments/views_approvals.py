"""Approvals API (four eyes, ``REQUIRE_APPROVAL``).

API keys are not people. The rule: requesting and deciding need an *admin* key; the request and
the decision record the key's name; "self-approval" means the same key, which is refused. So two
different admin keys (held by two people or two systems) are the four eyes on the API. Keys of
other scopes may read the requests (analyst) or nothing (client).
"""
from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response
from rest_framework.views import APIView

from access.permissions import ReadAnalystWriteAdmin

from . import approvals
from .models import ApprovalRequest, Experiment


class ApprovalSerializer(serializers.ModelSerializer):
    experiment = serializers.SlugRelatedField(slug_field="key", read_only=True)
    requested_by = serializers.CharField(source="requester", read_only=True)
    decided_by = serializers.CharField(source="decider", read_only=True)

    class Meta:
        model = ApprovalRequest
        fields = ["id", "experiment", "action", "shipped_variant", "status", "requested_by", "requested_at",
                  "decided_by", "decided_at", "comment"]
        read_only_fields = fields


class ApprovalRequestSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=ApprovalRequest.Action.choices)
    shipped_variant = serializers.CharField(required=False, allow_blank=True, max_length=64, default="")
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


class DecisionSerializer(serializers.Serializer):
    comment = serializers.CharField(required=False, allow_blank=True, max_length=2000, default="")


def _actor(request) -> dict:
    """A person (session) or an API key, as the approvals module takes them."""
    user = request.user
    if getattr(user, "key", None) is not None and hasattr(user, "scope"):
        return {"user": None, "key": str(user)}
    return {"user": user, "key": ""}


class ExperimentApprovals(APIView):
    """GET: the experiment's approval requests. POST: request a start or a completion."""

    permission_classes = [ReadAnalystWriteAdmin]

    @extend_schema(responses=ApprovalSerializer(many=True))
    def get(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        return Response(ApprovalSerializer(experiment.approval_requests.all(), many=True).data)

    @extend_schema(request=ApprovalRequestSerializer, responses={201: ApprovalSerializer})
    def post(self, request, key: str):
        experiment = get_object_or_404(Experiment, key=key)
        body = ApprovalRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            approval = approvals.request_approval(experiment, **body.validated_data, **_actor(request))
        except DjangoPermissionDenied as e:
            raise PermissionDenied(str(e)) from None
        return Response(ApprovalSerializer(approval).data, status=status.HTTP_201_CREATED)


class ApprovalDecision(APIView):
    """POST /approvals/<id>/approve|reject. Approving runs the transition; the same key may not decide."""

    permission_classes = [ReadAnalystWriteAdmin]
    decision: str = ""

    @extend_schema(request=DecisionSerializer, responses={200: ApprovalSerializer})
    def post(self, request, approval_id: int):
        get_object_or_404(ApprovalRequest, pk=approval_id)
        body = DecisionSerializer(data=request.data if request.data not in (None, b"", "") else {})
        body.is_valid(raise_exception=True)
        function = approvals.approve if self.decision == "approve" else approvals.reject
        try:
            approval = function(approval_id, comment=body.validated_data["comment"], **_actor(request))
        except DjangoPermissionDenied as e:
            raise PermissionDenied(str(e)) from None
        return Response(ApprovalSerializer(approval).data)
