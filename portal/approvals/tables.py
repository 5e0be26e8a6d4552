"""The approval request tables (inbox, my requests, all requests)."""
from portal.tables import Column, Empty, Table, TableSpec, keyset_page, table_register

APPROVALS = table_register(TableSpec("approvals", caption="Approval requests", columns=(
    Column("id", "Request", hideable=False),
    Column("operation", "Operation"),
    Column("target", "Target"),
    Column("requester", "Requested by"),
    Column("status", "Status"),
    Column("approvals", "Approvals"),
    Column("created", "Requested (UTC)"),
    Column("expires", "Expires (UTC)"),
), default_hidden=("created",)))


def approval_table(*, request, requests, empty: str, label: str,
                   order=("-created", "-id"), filtered: bool = False) -> Table:
    """One keyset page of approval requests."""
    rows, next_cursor = keyset_page(requests, order=order, after=request.GET.get("after", ""),
                                    datetimes=tuple(o.lstrip("-") for o in order
                                                    if o.lstrip("-") != "id"))
    return Table(spec=APPROVALS, rows=rows, row_template="approvals/_request_row.html",
                 request=request, count=requests.count(), next_cursor=next_cursor,
                 is_first_page=not request.GET.get("after"), noun=("request", "requests"),
                 label=label, empty=Empty(empty), filtered=filtered)
