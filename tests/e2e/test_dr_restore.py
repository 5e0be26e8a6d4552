"""An admin restores one key of the primary's backup into the secondary and watches the readiness checks pass live."""
import uuid

import pytest
from playwright.sync_api import expect

from dr_app import services
from portal.jobs.models import Job
from tests.dr_app.conftest import wait_for
from tests.e2e.conftest import sign_in
from tests.factories import PASSWORD


@pytest.mark.e2e
@pytest.mark.timeout(300)
def test_admin_restores_one_key_from_the_catalog(page, admin, hsm, secondary_hsm,
                                                  celery_worker):
    from portal import gateway

    key = f"restore-{uuid.uuid4().hex[:8]}"
    gateway.keys(hsm).create_rsa_key(key, size=2048)
    container = f"rest{uuid.uuid4().hex[:12]}"
    backup = services.backup_start(hsm=hsm, actor=admin, request_id="r", container=container)
    done = wait_for(lambda: (j := Job.objects.get(pk=backup.pk)).is_finished and j,
                    timeout=60, what="the worker to finish the backup")
    assert done.status == "succeeded", done.error
    folder = done.result["folder"]

    sign_in(page, admin.username, PASSWORD)
    page.goto("/hsms/secondary/backups/")
    page.get_by_role("button", name="Restore into secondary…").click()
    page.get_by_role("link", name=f"Use {folder}").click()  # the wizard lists every HSM's
    page.wait_for_url("**/hsms/secondary/restore/?folder=*")
    expect(page.get_by_label("Backup folder")).to_have_value(folder)
    page.get_by_label("Key name").fill(key)
    page.get_by_role("button", name="3. Start the restore").click()
    page.wait_for_url("**/restores/*/")
    steps = page.locator("#restore-steps")
    expect(steps).to_have_attribute("data-status", "succeeded", timeout=120_000)
    states = page.locator("#restore-steps li").evaluate_all(
        "items => items.map(i => i.dataset.state)")
    assert states == ["passed"] * 7
    assert key in {k.name for k in gateway.keys(secondary_hsm).list_properties_of_keys()}
    assert page.csp_errors == []
