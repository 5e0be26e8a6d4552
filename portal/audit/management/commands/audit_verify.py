"""manage.py audit_verify: re-compute the audit chain, check its signed checkpoints, and name
the first bad seq (a rewritten row, a removed tail, a missing prefix, a bad signature)."""
from django.core.management.base import BaseCommand, CommandError

from portal.audit.checkpoints import audit_verification_run


class Command(BaseCommand):
    help = ("Re-compute the hash chain of the audit trail and check every signed checkpoint "
            "(signature by the HSM key, row hash at its seq, no rows missing after it); "
            "exit 1 naming the first bad seq.")

    def add_arguments(self, parser):
        parser.add_argument("--no-checkpoints", action="store_true",
                            help="check the hash chain only (no HSM or storage needed)")

    def handle(self, *args, **options):
        def progress(done, total):
            if options["verbosity"] > 1:
                self.stdout.write(f"  {done:,} / {total:,} rows")

        verification = audit_verification_run(
            trigger="command", progress=progress,
            check_checkpoints=not options["no_checkpoints"])
        problems = verification.checkpoint_problems or []
        for problem in problems:
            seq = f"seq {problem['seq']}: " if problem.get("seq") is not None else ""
            self.stderr.write(f"Checkpoint problem: {seq}{problem['problem']}")
        if verification.first_bad_seq is not None:
            raise CommandError(f"Audit chain broken at seq {verification.first_bad_seq}: "
                               f"{verification.reason} ({verification.rows} rows verified "
                               "before it).")
        if not verification.ok:
            raise CommandError(f"Audit checkpoints failed verification: {verification.reason}")
        self.stdout.write(f"Audit chain intact: {verification.rows} rows verified, "
                          f"{verification.checkpoints} signed checkpoints valid.")
