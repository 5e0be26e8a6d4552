"""The job table of the jobs page (and the job row other pages reuse)."""
from portal.tables import Column, Empty, Table, TableSpec, keyset_page, table_register

JOBS = table_register(TableSpec("jobs", caption="Jobs", columns=(
    Column("id", "Job", hideable=False),
    Column("kind", "Kind"),
    Column("hsm", "HSM"),
    Column("status", "Status"),
    Column("progress", "Progress"),
    Column("step", "Step"),
    Column("actor", "Requested by"),
    Column("created", "Created (UTC)"),
    Column("finished", "Finished (UTC)"),
)))


def job_table(*, request, jobs) -> Table:
    """One keyset page of jobs, newest first."""
    rows, next_cursor = keyset_page(jobs, order=("-created", "-id"),
                                    after=request.GET.get("after", ""), datetimes=("created",))
    may_run = request.user.has_perm("jobs.add_job")
    return Table(spec=JOBS, rows=rows, row_template="jobs/_job_row.html", request=request,
                 count=jobs.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), noun=("job", "jobs"),
                 label="Jobs, newest first",
                 empty=Empty("No jobs yet: backups, restores, inventory syncs and self-checks "
                             "show their progress here." + (
                                 " Run a connectivity self-check to test the portal's "
                                 "connections." if may_run else "")))
