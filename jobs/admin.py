"""Jobs in the admin: status, progress and cost of every job, its rows, its usage records; cancel."""

from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from common.admin import ReadOnlyAdmin
from common.formatting import usd
from jobs import selectors, services
from jobs.models import FINISHED_JOB_STATUSES, Job, JobItem


@admin.register(Job)
class JobAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    list_display = ["created_at", "user", "status", "progress", "cost", "links"]
    list_filter = ["status", "source_kind"]
    list_select_related = ["user"]
    search_fields = ["=id", "user__username", "request_id"]
    date_hierarchy = "created_at"
    actions = ["cancel_jobs"]
    fields = [
        "id",
        "user",
        "token",
        "status",
        "progress",
        "cost",
        "links",
        "options",
        "source_kind",
        "upload_name",
        "error_code",
        "error_message",
        "request_id",
        "created_at",
        "started_at",
        "finished_at",
        "heartbeat_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return selectors.jobs_with_progress().select_related("user", "token")

    @admin.display(description="progress")
    def progress(self, obj):
        stats = selectors.job_progress(job=obj)
        details = f"{stats['failed']} failed, {stats['cancelled']} cancelled, {stats['running']} running"
        return format_html('{} / {} <small title="{}">({})</small>', stats["done"], stats["total"], details, details)

    @admin.display(description="cost", ordering="cost")
    def cost(self, obj):
        return usd(selectors.job_progress(job=obj)["cost_usd"])

    @admin.display(description="links")
    def links(self, obj):
        return format_html(
            '<a href="{}?job__id__exact={}" class="job-rows">rows</a> · '
            '<a href="{}?batch_id={}" class="job-usage">usage records</a>',
            reverse("admin:jobs_jobitem_changelist"),
            obj.pk,
            reverse("admin:llm_usagerecord_changelist"),
            obj.batch_id,
        )

    def has_change_permission(self, request, obj=None):
        # No edit form: the page is read only, but staff who may change jobs may cancel them.
        return obj is None and request.user.has_perm("jobs.change_job")

    @admin.action(description="Cancel selected jobs (rows not started are cancelled)", permissions=["change"])
    def cancel_jobs(self, request, queryset):
        count = 0
        for job in queryset.exclude(status__in=FINISHED_JOB_STATUSES):
            services.job_cancel(job=job)
            self.log_change(request, job, "Cancelled.")
            count += 1
        self.message_user(request, f"Cancelled {count} job(s).", messages.SUCCESS)


@admin.register(JobItem)
class JobItemAdmin(ReadOnlyAdmin, admin.ModelAdmin):
    """A job's rows (filter by job from the job list)."""

    list_display = ["position", "ref", "status", "model", "cached", "cost", "error_code", "usage"]
    list_filter = ["status", "cached"]
    list_select_related = ["usage_record"]
    show_full_result_count = False
    fields = [
        "job",
        "position",
        "ref",
        "status",
        "model",
        "prompt",
        "result",
        "error_code",
        "error_message",
        "cached",
        "cost",
        "cost_usd",
        "attempts",
        "usage",
        "finished_at",
    ]
    readonly_fields = fields

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, obj):
        return usd(obj.cost_usd)

    @admin.display(description="usage record")
    def usage(self, obj):
        if not obj.usage_record_id:
            return "—"
        url = reverse("admin:llm_usagerecord_change", args=[obj.usage_record_id])
        return format_html('<a href="{}">{}</a>', url, obj.request_id)
