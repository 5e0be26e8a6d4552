"""The backup catalog and drill history tables (the one table component)."""
from portal.tables import Column, Empty, Table, TableSpec, keyset_page, table_register

BACKUPS = table_register(TableSpec("dr-backups", caption="Backup catalog", columns=(
    Column("folder", "Folder", hideable=False),
    Column("started", "Time (UTC)"),
    Column("source", "Source HSM"),
    Column("keys", "Keys", numeric=True),
    Column("size", "Size", numeric=True),
    Column("status", "Status"),
    Column("auth", "Storage access"),
    Column("job", "Job"),
    Column("actions", "Restore"),
), default_hidden=("auth",)))

DRILLS = table_register(TableSpec("dr-drills", caption="DR drills", columns=(
    Column("id", "Drill", hideable=False),
    Column("hsms", "Primary → secondary"),
    Column("status", "Status"),
    Column("progress", "Progress"),
    Column("result", "Result"),
    Column("rto", "RTO", numeric=True),
    Column("rpo", "RPO", numeric=True),
    Column("created", "Started (UTC)"),
    Column("actor", "Run by"),
)))


def backup_table(*, request, backups) -> Table:
    rows, next_cursor = keyset_page(backups, order=("-started", "-id"),
                                    after=request.GET.get("after", ""), datetimes=("started",))
    return Table(spec=BACKUPS, rows=rows, row_template="dr_app/_backup_row.html",
                 request=request, count=backups.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), noun=("backup", "backups"),
                 label="Backups, newest first",
                 empty=Empty("No backups yet. Back up now, add a schedule, or read the "
                             "storage container for folders made elsewhere."))


def drill_table(*, request, drills) -> Table:
    rows, next_cursor = keyset_page(drills, order=("-created", "-id"),
                                    after=request.GET.get("after", ""), datetimes=("created",))
    return Table(spec=DRILLS, rows=rows, row_template="dr_app/_drill_row.html",
                 request=request, count=drills.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), noun=("drill", "drills"),
                 label="DR drills, newest first",
                 empty=Empty("No DR drill has run yet. A drill restores the primary's "
                             "latest backup into the secondary and measures RTO and RPO."))
