"""Clinic endpoints of the API: who am I, which clinics."""

from __future__ import annotations

from django_otp import match_token
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle

from clinic.api.base import ScopedReadOnlyViewSet
from clinic.api.router import router
from clinic.api.strict import StrictTypesMixin
from clinic.client_address import client_address
from clinic.models import Clinic, Membership
from clinic.two_factor import requires_two_factor


class ClinicSerializer(serializers.ModelSerializer):
    class Meta:
        model = Clinic
        fields = [
            "id", "name", "slug", "time_zone", "contact_email", "urgent_phone", "sender_name",
            "quiet_hours_start", "quiet_hours_end", "intake_max_age_days", "require_two_factor",
        ]


class ClinicViewSet(ScopedReadOnlyViewSet):
    queryset = Clinic.objects.all()
    serializer_class = ClinicSerializer


class MembershipSerializer(serializers.ModelSerializer):
    clinic = ClinicSerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["clinic", "role"]


class MeSerializer(serializers.Serializer):
    username = serializers.CharField()
    memberships = MembershipSerializer(many=True)


@extend_schema(responses=MeSerializer)
@api_view(["GET"])
def me(request: Request) -> Response:
    memberships = Membership.objects.filter(user=request.user, is_active=True).select_related("clinic")
    return Response(MeSerializer({"username": request.user.get_username(), "memberships": memberships}).data)


router.register("clinics", ClinicViewSet, basename="clinic")


class TokenRequestSerializer(StrictTypesMixin, AuthTokenSerializer):
    otp = serializers.CharField(
        required=False, allow_blank=True, write_only=True,
        help_text="The current code from the user's authenticator app, when their clinic requires two-factor sign-in.",
    )

    def validate(self, attrs: dict) -> dict:
        attrs = super().validate(attrs)
        user = attrs["user"]
        if requires_two_factor(user):
            code = (attrs.get("otp") or "").strip()
            if not code:
                raise serializers.ValidationError({"otp": ["This user's clinic requires a code from an authenticator app."]})
            if match_token(user, code) is None:
                raise serializers.ValidationError({"otp": ["That code is not right; use the newest one."]})
        return attrs


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send it as the header `Authorization: Token <token>`.")


class SignInThrottle(ScopedRateThrottle):
    # DRF's own get_ident believes the whole X-Forwarded-For header unless NUM_PROXIES
    # is set, so a client could start a fresh count with every request by changing it.
    def get_ident(self, request: Request) -> str:
        return client_address(request) or "unknown"


@extend_schema_view(post=extend_schema(request=TokenRequestSerializer, responses={200: TokenSerializer}, auth=[]))
class ObtainTokenView(ObtainAuthToken):
    """Exchange a username, password and (where required) a one-time code for an API token."""

    serializer_class = TokenRequestSerializer
    throttle_classes = [SignInThrottle]
    throttle_scope = "login"
    permission_classes: list = []
