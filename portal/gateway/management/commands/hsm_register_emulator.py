"""manage.py hsm_register_emulator FILE: register the HSMs an emulator's endpoints.json lists."""
import json
from pathlib import Path

from django.core.management.base import BaseCommand

from portal.gateway.services import hsm_upsert_system


class Command(BaseCommand):
    help = "Register (or re-point) the HSMs listed in the emulator's endpoints.json."

    def add_arguments(self, parser):
        parser.add_argument("endpoints", type=Path)

    def handle(self, *args, endpoints: Path, **options):
        data = json.loads(endpoints.read_text())
        for index, (name, uri) in enumerate(sorted(data["hsms"].items())):
            role = "primary" if name == "primary" or (index == 0 and "primary" not in data["hsms"]) \
                else "secondary"
            hsm = hsm_upsert_system(name=name, uri=uri, role=role, region="emulator",
                                    arm_resource_id=data.get("hsm_resource_ids", {}).get(name, ""))
            self.stdout.write(f"Registered HSM {hsm.name} at {hsm.uri}")
