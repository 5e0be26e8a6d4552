"""manage.py inventory_sync: queue an incremental key inventory sync of every HSM now."""
from django.core.management.base import BaseCommand

from keys_app.services import inventory_sync_all


class Command(BaseCommand):
    help = ("Queue an inventory sync Job for every registered HSM (what beat does every "
            "PORTAL_INVENTORY_SYNC_SECONDS); a worker runs them. Audited like beat's.")

    def handle(self, *args, **options):
        jobs = inventory_sync_all()
        self.stdout.write(f"Queued an inventory sync of {len(jobs)} HSM(s).")
