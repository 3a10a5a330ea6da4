"""python manage.py import_kb FILE [--merge]: restore a knowledge base written by export_kb."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from kb.services.backup import BackupError, backup_import


class Command(BaseCommand):
    help = (
        "Restore a knowledge base that export_kb wrote (rows with their keys, edit history, "
        "event log, users, groups, API tokens and stored files). The database must be at the "
        "archive's migrations and, without --merge, empty: freshly migrated, no users and no "
        "knowledge-base rows (the role groups migrate creates are allowed; the archive's "
        "groups replace them). --merge adds the archive to a database that holds rows: a row "
        "whose key is absent is added, an identical row is skipped, and a row whose key is "
        "present with other content refuses the whole import, listing the first conflicts. "
        "A stored file is written only where storage has nothing under its name; another "
        "file there refuses the import. Checksums are verified before anything is written, "
        "rows are written in one transaction and read back against the manifest: a refused "
        "or failed import writes nothing. FILE holds personal data: delete copies you no "
        "longer need."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="an archive written by export_kb")
        parser.add_argument(
            "--merge",
            action="store_true",
            help="add the archive's rows to a database that already holds rows (see above)",
        )

    def handle(self, *args, file: Path, merge: bool, **options) -> None:
        try:
            summary = backup_import(file, merge=merge)
        except BackupError as error:
            raise CommandError(str(error)) from None
        written = sum(summary.written.values())
        present = sum(summary.already_present.values())
        self.stdout.write(
            self.style.SUCCESS(
                f"Imported {file}: {written} rows written ({present} already present) and "
                f"{summary.files_written} stored files written "
                f"({summary.files_already_present} already present). Row counts and checksums "
                "match the archive."
            )
        )
