"""`/api/v1/models`, `/api/v1/prices`, `/api/v1/routes`: what a caller can use and what it costs (the `llm` scope),
and the administrator's prices and routes, which only a superuser's token with the `admin` scope can change."""

import django_filters
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_field, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.response import Response

from accounts.permissions import HasTokenScope, SuperuserWrites
from common.audit import VIA_API, actor_from_request
from llm import selectors, services
from llm.models import ModelPrice, ModelRoute
from llm.providers.registry import provider_choices
from llm.serializers import (
    CatalogModelSerializer,
    CatalogQuerySerializer,
    ModelPriceInputSerializer,
    ModelPriceSerializer,
    ModelRouteInputSerializer,
    ModelRouteSerializer,
)


@extend_schema(tags=["models"])
class ModelCatalogViewSet(viewsets.ViewSet):
    permission_classes = [HasTokenScope]
    required_scope = "llm"

    @extend_schema(
        summary="Models I can use",
        description="Every name a client can send as `model` (aliases first), its provider, the upstream model and "
        "today's price. The whole list (it is short): not paged. `GET /v1/models` lists the same names in "
        "OpenAI's shape.",
        parameters=[CatalogQuerySerializer],
        responses={200: CatalogModelSerializer(many=True)},
    )
    def list(self, request):
        query = CatalogQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        models = selectors.model_catalog(provider=query.validated_data.get("provider"))
        return Response(CatalogModelSerializer(models, many=True).data)


class _AdminTable(viewsets.GenericViewSet):
    """A table an administrator keeps: read with the `llm` scope, written only with a superuser's token that has
    the `admin` scope. Subclasses name the serializers and the services."""

    permission_classes = [HasTokenScope, SuperuserWrites]
    required_scope = "llm"
    write_scope = "admin"
    lookup_value_regex = r"\d+"
    input_serializer: type  # and create_service, update_service, delete_service

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(self.get_serializer(self.get_object()).data)

    def create(self, request):
        data = self._input(request)
        row = self.create_service(by=actor_from_request(request, via=VIA_API), **data)
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, pk=None):
        row = self.get_object()
        row = self.update_service(
            row, by=actor_from_request(request, via=VIA_API), **self._input(request, partial=True)
        )
        return Response(self.get_serializer(row).data)

    def destroy(self, request, pk=None):
        self.delete_service(self.get_object(), by=actor_from_request(request, via=VIA_API))
        return Response(status=status.HTTP_204_NO_CONTENT)

    def _input(self, request, partial: bool = False) -> dict:
        serializer = self.input_serializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


def _admin_table_schema(noun: str, output, input_serializer):
    writes = "Needs a superuser's token with the `admin` scope (403 otherwise)."
    refused = OpenApiResponse(
        description="The token lacks the `llm` scope, or (to write) the `admin` scope (`insufficient_scope`), or "
        "is not a superuser's (`permission_denied`)."
    )
    invalid = OpenApiResponse(description="Invalid input, as the admin's form would refuse it (`invalid_request`).")
    missing = OpenApiResponse(description=f"No {noun} with this id (`not_found`).")
    return extend_schema_view(
        list=extend_schema(summary=f"List {noun}s", description="Newest first (by id)."),
        retrieve=extend_schema(summary=f"One {noun}", responses={200: output, 404: missing}),
        create=extend_schema(
            summary=f"Add a {noun}",
            description=writes,
            request=input_serializer,
            responses={201: output, 400: invalid, 403: refused},
        ),
        partial_update=extend_schema(
            summary=f"Change a {noun}",
            description=f"{writes} Fields not sent stay as they are.",
            request=input_serializer,
            responses={200: output, 400: invalid, 403: refused, 404: missing},
        ),
        destroy=extend_schema(
            summary=f"Delete a {noun}", description=writes, responses={204: None, 403: refused, 404: missing}
        ),
    )


class PriceFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=provider_choices)
    model = django_filters.CharFilter(help_text="The exact model name.")

    class Meta:
        model = ModelPrice
        fields = ["provider", "model"]


@extend_schema(tags=["prices"])
@_admin_table_schema("price", ModelPriceSerializer, ModelPriceInputSerializer)
class ModelPriceViewSet(_AdminTable):
    """List prices per 1M tokens in USD; a model's price holds from `effective_from` until its next row."""

    queryset = ModelPrice.objects.all()
    serializer_class = ModelPriceSerializer
    input_serializer = ModelPriceInputSerializer
    filterset_class = PriceFilter

    def create_service(self, **fields):
        return services.model_price_create(**fields)

    def update_service(self, row, **fields):
        return services.model_price_update(price=row, **fields)

    def delete_service(self, row, by):
        services.model_price_delete(price=row, by=by)


class RouteFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=provider_choices)
    alias = django_filters.CharFilter(help_text="The exact alias.")
    # `true` or `false` only: django-filter's BooleanFilter reads anything else (`null`, `yes`) as no filter at all.
    is_active = django_filters.ChoiceFilter(choices=[("true", "true"), ("false", "false")], method="filter_is_active")

    class Meta:
        model = ModelRoute
        fields = ["provider", "alias", "is_active"]

    @extend_schema_field(OpenApiTypes.BOOL)  # `true` or `false`
    def filter_is_active(self, queryset, name, value):
        return queryset.filter(is_active=value == "true")


@extend_schema(tags=["routes"])
@_admin_table_schema("route", ModelRouteSerializer, ModelRouteInputSerializer)
class ModelRouteViewSet(_AdminTable):
    """Aliases: a model name clients send -> a provider, an upstream model, and optionally a base URL, a key of its
    own and a fallback route."""

    queryset = ModelRoute.objects.select_related("fallback")
    serializer_class = ModelRouteSerializer
    input_serializer = ModelRouteInputSerializer
    filterset_class = RouteFilter

    def create_service(self, **fields):
        return services.model_route_create(**fields)

    def update_service(self, row, **fields):
        return services.model_route_update(route=row, **fields)

    def delete_service(self, row, by):
        services.model_route_delete(route=row, by=by)
