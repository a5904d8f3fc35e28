"""`/api/v1/templates`: prompt templates. A user lists and reads their own and the shared ones (the built-in types
included), and creates, edits and deletes their own; shared ones are written only by admins (403 for others).
Another user's private template is a 404. Every edit is a new version (`GET .../{id}/versions`)."""

import django_filters
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.permissions import HasTokenScope
from common.errors import PermissionDenied
from common.serializers import StrictInputSerializer
from llm import selectors, services
from llm.models import PromptTemplate
from llm.template_text import template_variables
from llm.webhook_calls import TYPES

_SYNTAX = (
    "`string.Template` text: `$name` or `${name}` is a variable (letters, digits, `_`), `$$` a dollar sign; "
    "nothing else is evaluated."
)


class TemplateParametersSerializer(StrictInputSerializer):
    """Defaults for a request that does not set them."""

    temperature = serializers.FloatField(min_value=0, max_value=2, required=False)
    max_tokens = serializers.IntegerField(min_value=1, required=False)
    top_p = serializers.FloatField(min_value=0, max_value=1, required=False)
    stop = serializers.ListField(child=serializers.CharField(), max_length=4, required=False)


class _VersionFields(serializers.Serializer):
    """What each version keeps, shared by the template and its versions."""

    name = serializers.CharField(read_only=True)
    description = serializers.CharField(read_only=True)
    system = serializers.CharField(read_only=True, help_text=f"The instruction. {_SYNTAX}")
    user_template = serializers.CharField(read_only=True, help_text=f"The user message. {_SYNTAX}")
    variables = serializers.SerializerMethodField(help_text="The variables the texts use, in order of first use.")
    default_model = serializers.CharField(read_only=True, help_text="Empty: the request's or your default model.")
    parameters = TemplateParametersSerializer(read_only=True)

    def get_variables(self, obj) -> list[str]:
        return template_variables(obj.system, obj.user_template)


class TemplateSerializer(_VersionFields):
    id = serializers.IntegerField(read_only=True)
    shared = serializers.SerializerMethodField(help_text="Shared with every user (read only unless you are an admin).")
    type = serializers.SerializerMethodField(help_text="A built-in: the webhook `type` it answers (null: none).")
    source = serializers.CharField(read_only=True, help_text="A built-in's `source` (empty: any source).")
    version = serializers.SerializerMethodField(help_text="The current version's number.")
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    def get_shared(self, obj) -> bool:
        return obj.owner_id is None

    def get_type(self, obj) -> str | None:
        return obj.type or None

    def get_version(self, obj) -> int | None:
        return obj.current_version.number if obj.current_version else None


class TemplateVersionSerializer(_VersionFields):
    id = serializers.IntegerField(read_only=True)
    number = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)


def _not_a_type(name: str) -> str:
    if name in TYPES:
        raise serializers.ValidationError(f"`{name}` is a built-in type's name; choose another.")
    if name.isdigit():
        raise serializers.ValidationError("A name is not only digits (requests name a template by name or id).")
    return name


class TemplateInputSerializer(StrictInputSerializer):
    name = serializers.CharField(max_length=100, validators=[_not_a_type])
    description = serializers.CharField(allow_blank=True, required=False, default="")
    system = serializers.CharField(
        allow_blank=True, required=False, default="", help_text=f"The instruction. {_SYNTAX}"
    )
    user_template = serializers.CharField(help_text=f"The user message, e.g. `Write about $topic.` {_SYNTAX}")
    default_model = serializers.CharField(max_length=200, allow_blank=True, required=False, default="")
    parameters = TemplateParametersSerializer(required=False, default=dict)
    shared = serializers.BooleanField(
        required=False, default=False, help_text="Shared with every user; admins only (403 otherwise)."
    )


class TemplateFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains", help_text="Part of the name, in any case.")
    shared = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_shared",
        help_text="`true`: shared ones only; `false`: yours only.",
    )

    class Meta:
        model = PromptTemplate
        fields = ["name", "shared"]

    def filter_shared(self, queryset, name, value: str):
        return queryset.filter(owner__isnull=value == "true")


_NOT_YOURS = OpenApiResponse(description="No template of yours or shared one has this id (`not_found`).")
_READ_ONLY = OpenApiResponse(description="A shared template: only admins change it (`permission_denied`).")


@extend_schema(tags=["templates"])
@extend_schema_view(
    list=extend_schema(summary="List templates", description="Yours and the shared ones (the built-in types too)."),
    retrieve=extend_schema(summary="A template", responses={200: TemplateSerializer, 404: _NOT_YOURS}),
)
class TemplateViewSet(viewsets.GenericViewSet):
    permission_classes = [HasTokenScope]
    required_scope = "llm"
    queryset = PromptTemplate.objects.none()  # the model, for the schema; each request reads what the caller sees
    serializer_class = TemplateSerializer
    filterset_class = TemplateFilter
    lookup_value_regex = r"[0-9]{1,18}"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return PromptTemplate.objects.none()
        return selectors.prompt_templates_for_user(user_id=self.request.user.pk)

    def _writable(self) -> PromptTemplate:
        template = self.get_object()
        if template.owner_id is None and not self.request.user.is_superuser:
            raise PermissionDenied("A shared template is read only: only admins change it.")
        return template

    def _input(self, request, *, partial: bool) -> dict:
        serializer = TemplateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        if "parameters" in data:
            data["parameters"] = dict(data["parameters"])
        return data

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(TemplateSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(TemplateSerializer(self.get_object()).data)

    @extend_schema(
        summary="Create a template",
        request=TemplateInputSerializer,
        responses={201: TemplateSerializer, 403: OpenApiResponse(description="`shared` by a user who is no admin.")},
    )
    def create(self, request):
        data = self._input(request, partial=False)
        shared = data.pop("shared")
        if shared and not request.user.is_superuser:
            raise PermissionDenied("Only admins create shared templates.")
        template = services.prompt_template_create(
            owner_id=None if shared else request.user.pk, created_by_id=request.user.pk, **data
        )
        return Response(TemplateSerializer(template).data, status=status.HTTP_201_CREATED)

    def _update(self, request, *, partial: bool) -> Response:
        template = self._writable()
        data = self._input(request, partial=partial)
        data.pop("shared", None)  # who sees a template does not change after it is made
        template = services.prompt_template_update(template=template, changed_by_id=request.user.pk, **data)
        return Response(TemplateSerializer(template).data)

    @extend_schema(
        summary="Replace a template's text (a new version)",
        request=TemplateInputSerializer,
        responses={200: TemplateSerializer, 403: _READ_ONLY, 404: _NOT_YOURS},
    )
    def update(self, request, pk=None):
        return self._update(request, partial=False)

    @extend_schema(
        summary="Change a template (a new version)",
        description="Only the fields sent change; the same text again makes no new version.",
        request=TemplateInputSerializer(partial=True),
        responses={200: TemplateSerializer, 403: _READ_ONLY, 404: _NOT_YOURS},
    )
    def partial_update(self, request, pk=None):
        return self._update(request, partial=True)

    @extend_schema(
        summary="Delete a template",
        description="Its versions go with it; usage records that used one stay (without the link).",
        responses={204: None, 403: _READ_ONLY, 404: _NOT_YOURS},
    )
    def destroy(self, request, pk=None):
        services.prompt_template_delete(template=self._writable())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="A template's versions",
        description="Newest first. Each usage record names the version it used (`template_version`).",
        responses={200: TemplateVersionSerializer(many=True), 404: _NOT_YOURS},
        filters=False,
    )
    @action(detail=True, methods=["get"], filterset_class=None)
    def versions(self, request, pk=None):
        versions = selectors.prompt_template_versions(template=self.get_object())
        page = self.paginate_queryset(versions)
        return self.get_paginated_response(TemplateVersionSerializer(page, many=True).data)
