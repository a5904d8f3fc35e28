"""`/api/v1/tokens`: the caller's own API tokens (the `account` scope). Another user's token is a 404."""

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts import selectors, services
from accounts.models import APIToken
from accounts.permissions import HasTokenScope
from accounts.serializers import (
    APITokenCreatedSerializer,
    APITokenCreateSerializer,
    APITokenRotateSerializer,
    APITokenSerializer,
    APITokenUpdateSerializer,
)
from common.audit import VIA_API, actor_from_request


class TokenFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(
        choices=[(s, s) for s in selectors.TOKEN_STATUSES], method="filter_status", help_text="The token's status."
    )
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Part of the name, in any case.")

    class Meta:
        model = APIToken
        fields = ["status", "name"]

    def filter_status(self, queryset, name, value):
        return selectors.api_tokens_with_status(queryset=queryset, status=value)


_NOT_YOURS = OpenApiResponse(description="No token of yours has this id (`not_found`).")


@extend_schema(tags=["tokens"])
@extend_schema_view(
    list=extend_schema(summary="List my tokens", description="Newest first. Never the tokens themselves."),
    retrieve=extend_schema(summary="One of my tokens", responses={200: APITokenSerializer, 404: _NOT_YOURS}),
)
class TokenViewSet(viewsets.GenericViewSet):
    permission_classes = [HasTokenScope]
    required_scope = "account"
    queryset = APIToken.objects.none()  # the model, for the schema; each request reads the caller's own
    serializer_class = APITokenSerializer
    filterset_class = TokenFilter
    lookup_value_regex = r"\d+"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return APIToken.objects.none()
        return selectors.api_tokens_for_user(user=self.request.user)

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(APITokenSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(APITokenSerializer(self.get_object()).data)

    @extend_schema(
        summary="Create a token",
        description="The token itself is in this response only. Scopes, rate and budget within what an "
        "administrator allows you.",
        request=APITokenCreateSerializer,
        responses={
            201: APITokenCreatedSerializer,
            403: OpenApiResponse(
                description="The token used lacks the `account` scope (`insufficient_scope`), or the new token asks "
                "for more than you are allowed (`token_limit_exceeded`; `details.field`, `details.allowed`)."
            ),
        },
    )
    def create(self, request):
        serializer = APITokenCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, plaintext = services.api_token_create_for_self(
            user=request.user, by=actor_from_request(request, via=VIA_API), **serializer.validated_data
        )
        return Response(_with_plaintext(token, plaintext), status=status.HTTP_201_CREATED)

    @extend_schema(
        summary="Rename a token or change its expiry",
        request=APITokenUpdateSerializer,
        responses={
            200: APITokenSerializer,
            404: _NOT_YOURS,
            409: OpenApiResponse(description="The token is revoked, and read-only (`token_revoked`)."),
        },
    )
    def partial_update(self, request, pk=None):
        token = self.get_object()
        serializer = APITokenUpdateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = services.api_token_update_for_self(
            token=token, by=actor_from_request(request, via=VIA_API), **serializer.validated_data
        )
        return Response(APITokenSerializer(token).data)

    @extend_schema(
        summary="Revoke a token",
        description="It stops working at once (within API_TOKEN_LOCAL_CACHE_SECONDS on every worker). Revoking a "
        "revoked token changes nothing.",
        request=None,
        responses={200: APITokenSerializer, 404: _NOT_YOURS},
    )
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        return Response(
            APITokenSerializer(
                services.api_token_revoke(token=self.get_object(), by=actor_from_request(request, via=VIA_API))
            ).data
        )

    @extend_schema(
        summary="Rotate a token",
        description="A new token with the same name, scopes, expiry and limits, shown in this response only. The "
        "old one keeps working for `grace_minutes`, then stops.",
        request=APITokenRotateSerializer,
        responses={
            201: APITokenCreatedSerializer,
            400: OpenApiResponse(description="Invalid input, or the token is revoked (`token_revoked`)."),
            404: _NOT_YOURS,
        },
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        token = self.get_object()
        serializer = APITokenRotateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        new_token, plaintext = services.api_token_rotate(
            token=token, by=actor_from_request(request, via=VIA_API), **serializer.validated_data
        )
        return Response(_with_plaintext(new_token, plaintext), status=status.HTTP_201_CREATED)


def _with_plaintext(token: APIToken, plaintext: str) -> dict:
    """The body of `APITokenCreatedSerializer`: the token's fields and, this once, the token itself."""
    return {**APITokenSerializer(token).data, "token": plaintext}
