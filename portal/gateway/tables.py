"""The HSM registry's table, on the table component."""
from portal.tables import Column, Empty, Table, TableSpec, table_register

HSMS = table_register(TableSpec("hsms", caption="HSMs", columns=(
    Column("name", "Name", hideable=False),
    Column("role", "Role"),
    Column("region", "Region"),
    Column("uri", "Data-plane URL"),
    Column("arm", "ARM resource"),
    Column("created", "Registered (UTC)"),
    Column("actions", "Actions", hideable=False),
)))


def hsm_table(*, request, hsms) -> Table:
    """Every registered HSM (a handful: no paging)."""
    rows = list(hsms)
    may_register = request.user.has_perm("gateway.add_hsminstance")
    return Table(spec=HSMS, rows=rows, row_template="gateway/_hsm_row.html", request=request,
                 count=len(rows), noun=("HSM", "HSMs"), label="Registered HSMs",
                 empty=Empty("No HSM is registered yet." + (
                     " Register one with the form below." if may_register else
                     " An administrator registers them.")))
