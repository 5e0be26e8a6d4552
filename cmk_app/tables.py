"""The customer-managed-key list, on the one table component (portal.tables)."""
from django.urls import reverse

from portal.tables import Column, Empty, Table, TableSpec, keyset_page, table_register

BINDINGS = table_register(TableSpec("cmk-bindings", caption="Customer-managed keys", columns=(
    Column("resource", "Resource", sort="resource_name", hideable=False),
    Column("type", "Type"),
    Column("location", "Location"),
    Column("hsm", "HSM"),
    Column("key", "Key", sort="key_name"),
    Column("version", "Version in use"),
    Column("status", "Status"),
    Column("origin", "Origin"),
    Column("seen", "Last seen (UTC)"),
), default_hidden=("origin",)))

SORTS = {"resource_name": ("resource_name", "id"), "-resource_name": ("-resource_name", "id"),
         "key_name": ("key_name", "resource_name", "id"),
         "-key_name": ("-key_name", "resource_name", "id")}


def binding_table(*, request, rows, filtered: bool) -> Table:
    """One keyset page of bindings, by resource name unless asked otherwise."""
    sort = request.GET.get("sort", "resource_name")
    sort = sort if sort in SORTS else "resource_name"
    page, next_cursor = keyset_page(rows, order=SORTS[sort], after=request.GET.get("after", ""))
    may_attach = request.user.has_perm("cmk_app.attach_cmkbinding")
    empty = Empty("No resource uses an HSM key yet." if not filtered else
                  "No resource matches.", "Attach a key" if may_attach else "",
                  reverse("cmk:attach") if may_attach else "")
    return Table(spec=BINDINGS, rows=page, row_template="cmk_app/_binding_row.html",
                 request=request, sort=sort, count=rows.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), empty=empty, filtered=filtered,
                 label="Resources that use an HSM key", noun=("resource", "resources"))
