"""The key tables (the inventory and deleted keys), built on portal.tables."""
from django.urls import reverse

from keys_app.selectors import SORTS
from portal.tables import Column, Empty, Table, TableSpec, keyset_page, table_register

KEYS = table_register(TableSpec("keys", caption="Keys", default_hidden=("created",), columns=(
    Column("name", "Name", sort="name", hideable=False),
    Column("type", "Type"),
    Column("status", "Status"),
    Column("expires", "Expires (UTC)", sort="expires"),
    Column("rotation", "Rotation"),
    Column("versions", "Versions", numeric=True),
    Column("tags", "Tags"),
    Column("created", "Created (UTC)", sort="created"),
    Column("updated", "Updated (UTC)", sort="updated"),
    Column("usage", "Used by", numeric=True),
)))

# How many resources use each key (cmk_app registers one): fn(hsm) -> {lower-case name: n}.
USAGE_COUNTS: list = []

DELETED_KEYS = table_register(TableSpec("deleted-keys", caption="Deleted keys", columns=(
    Column("name", "Name", sort="name", hideable=False),
    Column("type", "Type"),
    Column("deleted", "Deleted (UTC)"),
    Column("purge", "Purged automatically (UTC)"),
    Column("actions", "Actions", hideable=False),
)))

_DATES = ("expires", "created_on", "updated_on", "deleted_on")


def key_table(*, request, hsm, keys, sort: str, filtered: bool) -> Table:
    """One keyset page of the inventory list, ordered by the sort asked for, then name."""
    rows, next_cursor = keyset_page(keys, order=SORTS.get(sort, SORTS["name"]),
                                    after=request.GET.get("after", ""), datetimes=_DATES)
    usage: dict = {}
    for count in USAGE_COUNTS:
        for name, n in count(hsm=hsm).items():
            usage[name] = usage.get(name, 0) + n
    for row in rows:
        row.used_by = usage.get(row.name.lower(), 0)
    may_create = request.user.has_perm("keys_app.add_keyrecord")
    if filtered:
        empty = Empty("No keys match these filters.")
    else:
        empty = Empty(f"No keys on {hsm.name} yet." +
                      ("" if may_create else " An administrator can create one."),
                      "Create key" if may_create else "",
                      reverse("keys:key-create", kwargs={"hsm_id": hsm.name}) if may_create else "")
    return Table(spec=KEYS, rows=rows, row_template="keys_app/_key_row.html", request=request,
                 sort=sort, count=keys.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), empty=empty, filtered=filtered,
                 label=f"Keys on {hsm.name}", noun=("key", "keys"))


def deleted_key_table(*, request, hsm, keys) -> Table:
    """One keyset page of the soft-deleted keys, by name."""
    rows, next_cursor = keyset_page(keys, order=("name",), after=request.GET.get("after", ""))
    return Table(spec=DELETED_KEYS, rows=rows, row_template="keys_app/_deleted_key_row.html",
                 request=request, sort="name", count=keys.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"),
                 empty=Empty(f"No deleted keys on {hsm.name}: a deleted key waits here until it "
                             f"is recovered or purged."),
                 label=f"Deleted keys on {hsm.name}", noun=("deleted key", "deleted keys"))
