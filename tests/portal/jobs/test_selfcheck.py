"""The self-check names the HSM that failed, not merely the last check it ran."""
from portal.jobs.models import Job
from portal.jobs.services import job_claim, selfcheck_run
from portal.gateway.models import HsmInstance


def test_selfcheck_names_the_hsm_that_failed(azure_settings, hsm, db):
    # "dead" sorts before "primary": it is checked first, primary (healthy) last.
    azure_settings.HSM_EMULATOR_HOSTS = [*azure_settings.HSM_EMULATOR_HOSTS, "127.0.0.1:1"]
    HsmInstance.objects.create(name="dead", uri="https://127.0.0.1:1", role="secondary")
    job = Job.objects.create(kind="system.selfcheck", actor_name="system")
    assert job_claim(job_id=job.pk, token="t")

    job = selfcheck_run(job_id=job.pk)

    assert job.status == Job.Status.FAILED
    assert job.step == "Failed: hsm dead"
    assert job.error == "hsm dead: HSM dead could not be reached from the portal's network."
    assert job.result["checks"]["hsm primary"] == "ok"
    assert "primary" not in job.step + job.error
