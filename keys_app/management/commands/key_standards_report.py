"""manage.py key_standards_report: cached keys that break the key standards; exit 1 if any."""
from django.core.management.base import BaseCommand, CommandError

from keys_app.selectors import KeyFilter, key_list
from keys_app.spec import standards_violations
from portal.gateway.selectors import hsm_list


class Command(BaseCommand):
    help = "List live keys (from the inventory cache) that break keys_app standards."

    def handle(self, *args, **options):
        broken = 0
        for hsm in hsm_list():
            for key in key_list(hsm=hsm, filters=KeyFilter()).iterator():
                for violation in standards_violations(key):
                    broken += 1
                    self.stdout.write(f"{hsm.name}/{key.name}: {violation}")
        if broken:
            raise CommandError(f"{broken} standards violation(s).")
        self.stdout.write("Every cached key meets the key standards.")
