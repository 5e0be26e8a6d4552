"""Per-user display preferences of the table component (hidden columns, density).

Kept in the database so they follow the user to any browser. They are display only, never
security state, but every write the portal makes is audited: `preference.set`, recorded in
the same transaction (no row, no change).
"""
from django.db import transaction

from portal.accounts.models import TablePreference
from portal.audit.models import AuditEvent
from portal.audit.services import audit_record
from portal.errors import BadInput


def table_preference_set(*, user, table_id: str, hidden: list[str], density: str,
                         request_id: str) -> TablePreference:
    """Remember how `user` likes table `table_id`. Audited; unknown tables, columns or
    densities are a 400 sentence."""
    from portal.tables import DENSITIES, table_spec

    spec = table_spec(table_id)
    if spec is None:
        raise BadInput(f"There is no table called {table_id[:32]}.", fields={"table": [
            "Not a table of the portal."]})
    hideable = {column.key for column in spec.columns if column.hideable}
    unknown = [key[:32] for key in hidden if key not in hideable]
    if unknown:
        raise BadInput(f"These columns cannot be hidden: {', '.join(unknown[:5])}.",
                       fields={"hidden": ["Pick columns of this table."]})
    if density not in DENSITIES:
        raise BadInput("Density is comfortable or compact.",
                       fields={"density": ["Choose comfortable or compact."]})
    hidden = sorted(set(hidden), key=spec.column_keys().index)
    with transaction.atomic():
        pref, _created = TablePreference.objects.update_or_create(
            user=user, table=table_id, defaults={"hidden_columns": hidden, "density": density})
        audit_record(actor=user, action="preference.set", target=f"table:{table_id}",
                     request_id=request_id, outcome=AuditEvent.Outcome.RECORDED,
                     detail={"hidden": hidden, "density": density})
    return pref
