"""python manage.py export_kb FILE: the whole knowledge base in one new file."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from kb.services.backup import BackupError, backup_export


class Command(BaseCommand):
    help = (
        "Write the whole knowledge base to FILE, a new zip archive: every row of the kb and "
        "analysis apps (edit history and event log included), users with their groups and "
        "permissions, API tokens, and every stored file (run figures, model weights), with a "
        "manifest of migrations, row counts and checksums. FILE holds personal data (names, "
        "e-mail addresses, transcripts) and secrets (password hashes, API tokens): it is "
        "created readable by its owner only (0600); keep it as safe as the database. The "
        "file is written to a temporary name and renamed when complete; an existing FILE is "
        "never replaced. Restore with import_kb."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", type=Path, help="the archive to create (must not exist)")

    def handle(self, *args, file: Path, **options) -> None:
        try:
            manifest = backup_export(file)
        except BackupError as error:
            raise CommandError(str(error)) from None
        rows = sum(table["rows"] for table in manifest["tables"].values())
        stored = sum(entry["size"] for entry in manifest["files"].values())
        self.stdout.write(
            self.style.SUCCESS(
                f"Wrote {file}: {rows} rows in {len(manifest['tables'])} tables and "
                f"{len(manifest['files'])} stored files ({stored} bytes)."
            )
        )
        self.stdout.write("It holds personal data and secrets; it is readable by you only.")
