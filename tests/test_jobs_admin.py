"""Jobs in the admin: progress, cost, links to the rows and usage records, cancelling."""

from decimal import Decimal

import pytest

from accounts import services as account_services
from jobs.models import ItemStatus, Job, JobItem, JobStatus
from llm.services import UsageDraft, usage_record_create
from tests.admin_pages import assert_on_screen, logged_in_admin, screenshot

pytestmark = pytest.mark.django_db


@pytest.fixture
def job():
    bob = account_services.user_create(username="bob")
    job = Job.objects.create(user=bob, status=JobStatus.RUNNING, total=3)
    record = usage_record_create(
        draft=UsageDraft(
            request_id=f"job_{job.pk.hex}.0",
            endpoint="chat",
            user_id=bob.pk,
            batch_id=job.batch_id,
            status="ok",
            http_status=200,
            cost_usd=Decimal("0.000974100000"),
        )
    )
    usage_record_create(
        draft=UsageDraft(request_id="other", endpoint="chat", user_id=bob.pk, status="ok", http_status=200)
    )
    JobItem.objects.create(
        job=job, position=0, ref=1, status=ItemStatus.OK, cost_usd=Decimal("0.000974100000"), usage_record=record
    )
    JobItem.objects.create(job=job, position=1, ref=2, status=ItemStatus.PENDING)
    JobItem.objects.create(job=job, position=2, ref=3, status=ItemStatus.PENDING)
    return job


def test_job_list_shows_progress_cost_and_links(admin_client, job):
    html = admin_client.get("/admin/jobs/job/").content.decode()
    assert "1 / 3" in html and "$0.000974" in html
    assert f'href="/admin/jobs/jobitem/?job__id__exact={job.pk}"' in html
    assert f'href="/admin/llm/usagerecord/?batch_id={job.batch_id}"' in html

    rows = admin_client.get(f"/admin/jobs/jobitem/?job__id__exact={job.pk}").content.decode()
    assert rows.count('class="field-position"') == 3 and f"job_{job.pk.hex}.0" in rows

    records = admin_client.get(f"/admin/llm/usagerecord/?batch_id={job.batch_id}").content.decode()
    assert f"job_{job.pk.hex}.0" in records and 'data-request-id="other"' not in records


def test_cancel_action_cancels_the_job_and_its_pending_rows(admin_client, job):
    response = admin_client.post(
        "/admin/jobs/job/", {"action": "cancel_jobs", "_selected_action": [str(job.pk)]}, follow=True
    )
    assert "Cancelled 1 job(s)." in response.content.decode()
    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert list(job.items.order_by("position").values_list("status", flat=True)) == ["ok", "cancelled", "cancelled"]


@pytest.mark.browser
def test_job_list_at_1400_px(job, browser_page, tmp_path):
    page = logged_in_admin(browser_page)
    page.goto("/admin/jobs/job/")
    screenshot(page, tmp_path, "jobs")
    assert_on_screen(page, "#result_list thead th, #result_list tbody td", within="#changelist .results")
    assert page.locator(".job-rows").is_visible() and page.locator(".job-usage").is_visible()
