"""Backups: the whole knowledge base in one file, and back into a database.

The archive is a zip file:

    manifest.json        format and version, when it was made, the applied migrations per app,
                         per table its row count and checksum, per stored file its size and
                         SHA-256, and where each primary-key sequence stood
    rows/<table>.jsonl   one row per line as canonical JSON, ordered by primary key
    files/<name>         every file in default storage (figures, weights) under its own name

A table's checksum is the SHA-256 of its rows file, so the same function computes it from a
database (`table_checksums`) and from an archive. Rows keep their primary keys, so links, edit
history and the event log stay intact; content types, permissions and groups, which migrate
rebuilds, are referred to by natural key. Sessions and the admin's log are not knowledge and
stay out. Files go through `default_storage` only, so the backend (a folder, S3) does not
matter.
"""

import base64
import datetime
import hashlib
import json
import os
import tempfile
import uuid
import zipfile
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import IO

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.management.color import no_style
from django.db import DatabaseError, connection, transaction
from django.db.migrations.recorder import MigrationRecorder
from django.db.models import Model
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone
from django.utils.duration import duration_iso_string
from rest_framework.authtoken.models import Token

FORMAT = "insight-kb-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ROWS_DIR = "rows/"
FILES_DIR = "files/"
# Every model of these apps is in the archive, edit history and event log included.
ROW_APPS = ("kb", "analysis")
# Groups are matched by name, not key: migrate creates the role groups in every database.
GROUPS = "auth.group"
CONFLICTS_SHOWN = 10
INSERT_BATCH = 500
CHUNK = 1 << 20


class BackupError(Exception):
    """The archive cannot be written or restored here; the message says why."""


@dataclass(frozen=True)
class ImportSummary:
    """What an import wrote, per table: rows written (added, or for groups in an empty
    database, migrate's defaults replaced) and identical rows already present; and files."""

    written: dict[str, int]
    already_present: dict[str, int]
    files_written: int
    files_already_present: int


# --- what the archive holds ------------------------------------------------------------------


def _row_models() -> list[type[Model]]:
    """Models whose rows the archive holds by primary key."""
    user = get_user_model()
    models = [user, user.groups.through, user.user_permissions.through, Token]
    for app in ROW_APPS:
        models += [
            model
            for model in apps.get_app_config(app).get_models(include_auto_created=True)
            if model._meta.managed and not model._meta.proxy
        ]
    return models


def _label(model: type[Model]) -> str:
    return model._meta.label_lower


class _NaturalKeys:
    """This database's content types, permissions and groups: key <-> natural key."""

    def __init__(self) -> None:
        types = {
            pk: [app, name]
            for pk, app, name in ContentType.objects.values_list("pk", "app_label", "model")
        }
        self.by_pk: dict[type[Model], dict] = {
            ContentType: types,
            Permission: {
                pk: [codename, *types[type_pk]]
                for pk, codename, type_pk in Permission.objects.values_list(
                    "pk", "codename", "content_type"
                )
            },
            Group: {pk: [name] for pk, name in Group.objects.values_list("pk", "name")},
        }
        self.by_key = {
            model: {tuple(key): pk for pk, key in keys.items()}
            for model, keys in self.by_pk.items()
        }

    def applies_to(self, model: type[Model] | None) -> bool:
        return model in self.by_pk

    def encode(self, model: type[Model], pk: int) -> list[str]:
        return self.by_pk[model][pk]

    def decode(self, model: type[Model], key: list) -> int:
        try:
            return self.by_key[model][tuple(key)]
        except (KeyError, TypeError):
            raise BackupError(
                f"This database has no {model._meta.verbose_name} {key!r}, which the archive "
                "refers to."
            ) from None


# --- rows as canonical JSON lines ------------------------------------------------------------


def _json_value(value: object) -> object:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return duration_iso_string(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return base64.b64encode(bytes(value)).decode()
    raise TypeError(f"cannot store a {type(value).__name__} in a backup")


def _canonical(row: dict) -> str:
    return json.dumps(
        row, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_json_value
    )


def _table_lines(model: type[Model], keys: _NaturalKeys) -> dict:
    """Primary key -> canonical line of every row of `model`."""
    fields = model._meta.concrete_fields
    names = [field.attname for field in fields]
    by_key = [keys.applies_to(field.related_model) for field in fields]
    pk_name = model._meta.pk.attname
    lines = {}
    for values in model._base_manager.values_list(*names).iterator():
        row = {
            name: keys.encode(field.related_model, value)
            if natural and value is not None
            else value
            for name, field, natural, value in zip(names, fields, by_key, values, strict=True)
        }
        lines[row[pk_name]] = _canonical(row)
    return lines


def _group_lines(keys: _NaturalKeys) -> dict:
    """Group name -> canonical line of the group with its permissions' natural keys."""
    granted = defaultdict(list)
    for group_pk, permission_pk in Group.permissions.through.objects.values_list(
        "group_id", "permission_id"
    ):
        granted[group_pk].append(keys.encode(Permission, permission_pk))
    return {
        name: _canonical({"name": name, "permissions": sorted(granted[pk])})
        for pk, name in Group.objects.values_list("pk", "name")
    }


def _database_tables() -> dict[str, dict]:
    """Every table the archive holds, as identity (key, or name for groups) -> line."""
    keys = _NaturalKeys()
    tables = {GROUPS: _group_lines(keys)}
    for model in _row_models():
        tables[_label(model)] = _table_lines(model, keys)
    return tables


def _rows_file(lines: dict) -> bytes:
    return "".join(lines[identity] + "\n" for identity in sorted(lines)).encode()


def _summary(lines: dict) -> dict:
    return {"rows": len(lines), "sha256": hashlib.sha256(_rows_file(lines)).hexdigest()}


def table_checksums() -> dict[str, dict]:
    """Row count and checksum of every table a backup holds, computed from this database the
    way export_kb records them in its manifest."""
    return {label: _summary(lines) for label, lines in _database_tables().items()}


# --- database state: migrations, sequences, constraints --------------------------------------


def _applied_migrations() -> dict[str, list[str]]:
    app_labels = {model._meta.app_label for model in _row_models()}
    applied = defaultdict(list)
    for app, name in MigrationRecorder(connection).applied_migrations():
        if app in app_labels:
            applied[app].append(name)
    return {app: sorted(names) for app, names in sorted(applied.items())}


def _sequence_positions(models: list[type[Model]]) -> dict[str, int]:
    """The last key each table's sequence handed out. A restored table must not hand out the
    key of a deleted record again: its edit history and the event log still name it."""
    if connection.vendor not in {"postgresql", "sqlite"}:
        return {}
    positions = {}
    with connection.cursor() as cursor:
        for model in models:
            if not isinstance(model._meta.pk, AutoFieldMixin):
                continue
            table = model._meta.db_table
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT pg_sequence_last_value(pg_get_serial_sequence(%s, %s))",
                    [table, model._meta.pk.column],
                )
            else:
                cursor.execute("SELECT seq FROM sqlite_sequence WHERE name = %s", [table])
            row = cursor.fetchone()
            if row and row[0] is not None:
                positions[_label(model)] = row[0]
    return positions


def _advance_sequences(models: list[type[Model]], floors: dict[str, int]) -> None:
    """Sequences past every key now in the tables (Django's reset), then past `floors`."""
    with connection.cursor() as cursor:
        for statement in connection.ops.sequence_reset_sql(no_style(), models):
            cursor.execute(statement)
        current = _sequence_positions(models)
        for model in models:
            floor = floors.get(_label(model), 0)
            if floor <= current.get(_label(model), 0):
                continue
            if connection.vendor == "postgresql":
                cursor.execute(
                    "SELECT setval(pg_get_serial_sequence(%s, %s), %s)",
                    [model._meta.db_table, model._meta.pk.column, floor],
                )
            else:
                cursor.execute(
                    "DELETE FROM sqlite_sequence WHERE name = %s", [model._meta.db_table]
                )
                cursor.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (%s, %s)",
                    [model._meta.db_table, floor],
                )


@contextmanager
def _snapshot() -> Iterator[None]:
    """One consistent view of every table while the site keeps writing (on PostgreSQL, a
    repeatable-read transaction; inside an outer transaction, that transaction's view)."""
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        yield


# --- stored files ----------------------------------------------------------------------------


def _stored_files(directory: str = "") -> Iterator[str]:
    """Every file name in default storage, walked through the storage API."""
    try:
        folders, files = default_storage.listdir(directory)
    except FileNotFoundError:
        return
    prefix = f"{directory}/" if directory else ""
    for name in sorted(files):
        yield prefix + name
    for folder in sorted(folders):
        yield from _stored_files(prefix + folder)


def _digest(stream: IO[bytes], copy_to: IO[bytes] | None = None) -> dict:
    """Size and SHA-256 of what `stream` holds, optionally copying it on the way."""
    digest, size = hashlib.sha256(), 0
    for chunk in iter(lambda: stream.read(CHUNK), b""):
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def _stored_digest(name: str) -> dict:
    with default_storage.open(name, "rb") as stored:
        return _digest(stored)


def _check_file_name(name: object) -> None:
    """A name the archive may restore: relative, inside storage, nothing odd."""
    normal = isinstance(name, str) and "\x00" not in name and str(PurePosixPath(name)) == name
    odd = not normal or name in {"", "."} or name.startswith("/")
    if odd or ".." in PurePosixPath(name).parts:
        raise BackupError(f"The archive names a stored file outside storage: {name!r}.")


# --- export ----------------------------------------------------------------------------------


def backup_export(path: Path | str) -> dict:
    """Write the whole knowledge base to a new zip file at `path`, readable by its owner only
    (0600) and complete or absent (written to a temporary file, then renamed). Returns the
    manifest. Refuses a path that exists."""
    path = Path(path)
    if path.exists():
        raise BackupError(f"{path} already exists; choose a new name.")
    if not path.parent.is_dir():
        raise BackupError(f"The folder {path.parent} does not exist.")
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(handle, 0o600)
        with os.fdopen(handle, "wb") as stream:
            with zipfile.ZipFile(stream, "w", zipfile.ZIP_DEFLATED) as archive:
                manifest = _write_archive(archive)
            stream.flush()
            os.fsync(stream.fileno())
        try:
            # A link, unlike a rename, fails when something appeared at `path` meanwhile.
            os.link(temporary, path)
        except FileExistsError:
            raise BackupError(f"{path} already exists; choose a new name.") from None
    finally:
        Path(temporary).unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return manifest


def _write_archive(archive: zipfile.ZipFile) -> dict:
    with _snapshot():
        created_at = timezone.now()
        tables = _database_tables()
        migrations = _applied_migrations()
        sequences = _sequence_positions(_row_models())
    for label, lines in tables.items():
        archive.writestr(f"{ROWS_DIR}{label}.jsonl", _rows_file(lines))
    files = {}
    for name in _stored_files():
        with (
            default_storage.open(name, "rb") as stored,
            archive.open(FILES_DIR + name, "w", force_zip64=True) as member,
        ):
            files[name] = _digest(stored, copy_to=member)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": created_at.isoformat(),
        "migrations": migrations,
        "tables": {label: _summary(lines) for label, lines in tables.items()},
        "files": files,
        "sequences": sequences,
    }
    archive.writestr(MANIFEST, json.dumps(manifest, indent=1, sort_keys=True))
    return manifest


# --- import: read and check everything before writing anything ------------------------------


def backup_import(path: Path | str, *, merge: bool = False) -> ImportSummary:
    """Restore an archive written by backup_export.

    Refused (BackupError, nothing written) when the archive is damaged or of another format
    version or migration state, and, unless `merge`, when this database already holds rows
    (the role groups migrate creates aside). With `merge`, a row whose key is absent is added,
    an identical row is skipped, and a key present with other content refuses the whole
    import. Rows are written in one transaction, files through default storage; counts and
    checksums are compared with the manifest before the transaction commits.
    """
    try:
        archive = zipfile.ZipFile(path)
    except OSError as error:
        raise BackupError(f"Cannot read {path}: {error.strerror or error}.") from None
    except zipfile.BadZipFile:
        raise BackupError(f"{path} is not a backup archive (not a zip file).") from None
    try:
        with archive:
            manifest = _read_manifest(archive)
            tables = _read_tables(archive, manifest)
            _check_archived_files(archive, manifest["files"])
            if not merge:
                _check_empty()
            return _restore(archive, manifest, tables, merge=merge)
    except zipfile.BadZipFile as error:
        raise BackupError(f"The archive is damaged ({error}).") from None


def _read_manifest(archive: zipfile.ZipFile) -> dict:
    try:
        manifest = json.loads(archive.read(MANIFEST))
        found = (manifest["format"], manifest["format_version"])
        sections = [manifest[key] for key in ("migrations", "tables", "files", "sequences")]
    except (KeyError, TypeError, ValueError):
        raise BackupError("The file is not an Insight KB backup (no readable manifest).") from None
    if found[0] != FORMAT:
        raise BackupError("The file is not an Insight KB backup.")
    if found[1] != FORMAT_VERSION:
        raise BackupError(
            f"The archive has format version {found[1]!r}; this version of Insight KB reads "
            f"version {FORMAT_VERSION} only."
        )
    if not _well_formed(*sections):
        raise BackupError("The archive's manifest is malformed.")
    _check_migrations(manifest["migrations"])
    expected = [GROUPS, *map(_label, _row_models())]
    if sorted(manifest["tables"]) != sorted(expected):
        raise BackupError("The archive holds other tables than this version of Insight KB.")
    return manifest


def _well_formed(migrations: object, tables: object, files: object, sequences: object) -> bool:
    def mapping_of(value: object, check) -> bool:
        return isinstance(value, dict) and all(check(item) for item in value.values())

    def summary(item: object) -> bool:
        return mapping_of(item, lambda value: isinstance(value, int | str))

    return (
        mapping_of(migrations, lambda names: isinstance(names, list) and all(map(_is_str, names)))
        and mapping_of(tables, summary)
        and mapping_of(files, summary)
        and mapping_of(sequences, lambda position: isinstance(position, int))
    )


def _is_str(value: object) -> bool:
    return isinstance(value, str)


def _check_migrations(archived: dict) -> None:
    here = _applied_migrations()
    differences = []
    for app in sorted(set(here) | set(archived)):
        theirs, ours = set(archived.get(app) or []), set(here.get(app, []))
        if theirs - ours:
            differences.append(f"{app}: this database lacks {', '.join(sorted(theirs - ours))}")
        if ours - theirs:
            differences.append(f"{app}: the archive predates {', '.join(sorted(ours - theirs))}")
    if differences:
        raise BackupError(
            "The archive was made at another migration state than this database's ("
            + "; ".join(differences)
            + "). Restore into a database migrated to the archive's state."
        )


def _identity_field(label: str) -> str:
    return "name" if label == GROUPS else apps.get_model(label)._meta.pk.attname


def _field_names(label: str) -> set[str]:
    if label == GROUPS:
        return {"name", "permissions"}
    return {field.attname for field in apps.get_model(label)._meta.concrete_fields}


def _read_tables(archive: zipfile.ZipFile, manifest: dict) -> dict[str, dict]:
    """Each table's rows, identity -> line, after checking them against the manifest."""
    tables = {}
    for label, expected in manifest["tables"].items():
        try:
            data = archive.read(f"{ROWS_DIR}{label}.jsonl")
        except KeyError:
            raise BackupError(f"The archive is damaged: the rows of {label} are missing.") from None
        if hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            raise BackupError(f"The archive is damaged: {label} does not match its checksum.")
        try:
            lines = _parsed_lines(label, data)
        except (ValueError, TypeError, AttributeError):
            raise BackupError(f"The archive's rows of {label} do not fit this database.") from None
        if len(lines) != expected.get("rows"):
            raise BackupError(f"The archive is damaged: {label} has another row count.")
        tables[label] = lines
    return tables


def _parsed_lines(label: str, data: bytes) -> dict:
    """identity -> line; ValueError unless every line is a canonical row of this table."""
    identity, names, lines = _identity_field(label), _field_names(label), {}
    for line in data.decode().split("\n")[:-1]:
        row = json.loads(line)
        if set(row.keys()) != names or _canonical(row) != line:
            raise ValueError(line)
        lines[row[identity]] = line
    return lines


def _check_archived_files(archive: zipfile.ZipFile, files: dict) -> None:
    for name, expected in files.items():
        _check_file_name(name)
        try:
            with archive.open(FILES_DIR + name) as member:
                found = _digest(member)
        except KeyError:
            raise BackupError(f"The archive is damaged: the file {name} is missing.") from None
        if found != expected:
            raise BackupError(
                f"The archive is damaged: the file {name} does not match its checksum."
            )


def _check_empty() -> None:
    counts = {
        _label(model): count for model in _row_models() if (count := model._base_manager.count())
    }
    if counts:
        shown = [f"{label}: {count}" for label, count in list(counts.items())[:CONFLICTS_SHOWN]]
        if len(counts) > CONFLICTS_SHOWN:
            shown.append(f"{len(counts) - CONFLICTS_SHOWN} more tables")
        raise BackupError(
            f"This database is not empty: it holds {sum(counts.values())} rows "
            f"({', '.join(shown)}). Import into a freshly migrated database, or pass --merge "
            "to add the archive's rows to these."
        )


def _files_to_write(files: dict) -> tuple[list[str], int]:
    """Archived files storage lacks, and how many it holds already with the same content.
    Another file under an archived name refuses the import: restoring would replace it."""
    missing, present, clashes = [], 0, []
    for name, expected in files.items():
        if not default_storage.exists(name):
            missing.append(name)
        elif _stored_digest(name) == expected:
            present += 1
        else:
            clashes.append(name)
    if clashes:
        raise BackupError(
            "Storage holds other files under names the archive restores: "
            f"{', '.join(clashes[:CONFLICTS_SHOWN])}. Move them away first."
        )
    return missing, present


def _conflict(label: str, identity: object, archived: str, present: str) -> str:
    theirs, ours = json.loads(archived), json.loads(present)
    fields = sorted(name for name in theirs if theirs[name] != ours.get(name))
    return f"{label} {identity!r}: {', '.join(fields)} differ"


def _plan(tables: dict[str, dict], *, merge: bool) -> dict[str, list[str]]:
    """The lines of each table to write. A key present with other content is a conflict
    (merge) or, for groups in an empty database, migrate's defaults that the archive's
    replace."""
    present, plan, conflicts = _database_tables(), {}, []
    for label, archived in tables.items():
        plan[label] = [line for key, line in archived.items() if present[label].get(key) != line]
        conflicts += [
            _conflict(label, key, line, present[label][key])
            for key, line in archived.items()
            if key in present[label] and present[label][key] != line
        ]
    if conflicts and merge:
        raise BackupError(
            f"{len(conflicts)} rows of the archive differ from rows with the same key here; "
            "nothing was imported. First conflicts: " + "; ".join(conflicts[:CONFLICTS_SHOWN])
        )
    return plan


# --- import: write ---------------------------------------------------------------------------


def _restore(archive, manifest: dict, tables: dict, *, merge: bool) -> ImportSummary:
    missing_files, files_present = _files_to_write(manifest["files"])
    written: list[str] = []
    try:
        with transaction.atomic():
            plan = _plan(tables, merge=merge)
            _write_rows(plan, manifest["sequences"])
            for name in missing_files:
                _restore_file(archive, name, manifest["files"][name])
                written.append(name)
            _verify(tables, manifest)
    except DatabaseError as error:
        _delete_files(written)
        raise BackupError(f"The archive's rows do not fit this database: {error}") from None
    except BaseException:
        _delete_files(written)
        raise
    return ImportSummary(
        written={label: len(lines) for label, lines in plan.items()},
        already_present={label: len(tables[label]) - len(lines) for label, lines in plan.items()},
        files_written=len(written),
        files_already_present=files_present,
    )


def _write_rows(plan: dict[str, list[str]], archived_sequences: dict) -> None:
    models = _row_models()
    floors = _sequence_positions(models)
    for label, position in archived_sequences.items():
        floors[label] = max(floors.get(label, 0), position)
    _write_groups(plan[GROUPS])
    keys = _NaturalKeys()
    for model in models:
        rows = [_instance(model, json.loads(line), keys) for line in plan[_label(model)]]
        for start in range(0, len(rows), INSERT_BATCH):
            # A raw insert, as loaddata's: the rows' own timestamps are kept (auto_now would
            # stamp them now), and no signal adds history rows for them.
            model._base_manager._insert(
                rows[start : start + INSERT_BATCH],
                fields=model._meta.local_concrete_fields,
                raw=True,
            )
    connection.check_constraints(table_names=[model._meta.db_table for model in models])
    _advance_sequences(models, floors)


def _write_groups(lines: list[str]) -> None:
    keys = _NaturalKeys()
    for line in lines:
        row = json.loads(line)
        group, _ = Group.objects.get_or_create(name=row["name"])
        group.permissions.set([keys.decode(Permission, key) for key in row["permissions"]])


def _instance(model: type[Model], row: dict, keys: _NaturalKeys) -> Model:
    values = {}
    for field in model._meta.concrete_fields:
        value = row[field.attname]
        if value is not None:
            if keys.applies_to(field.related_model):
                value = keys.decode(field.related_model, value)
            else:
                value = field.to_python(value)
        values[field.attname] = value
    return model(**values)


def _restore_file(archive: zipfile.ZipFile, name: str, expected: dict) -> None:
    with archive.open(FILES_DIR + name) as member:
        content = File(member, name=name)
        content.size = expected["size"]
        saved = default_storage.save(name, content)
    if saved != name:
        default_storage.delete(saved)
        raise BackupError(f"Storage saved {name} under another name ({saved}).")


def _delete_files(names: list[str]) -> None:
    for name in names:
        default_storage.delete(name)


def _verify(tables: dict[str, dict], manifest: dict) -> None:
    """Read back the archive's rows and files: same counts and checksums as the manifest."""
    now = _database_tables()
    for label, archived in tables.items():
        restored = {key: now[label][key] for key in archived if key in now[label]}
        if _summary(restored) != manifest["tables"][label]:
            raise BackupError(f"{label} read back differs from the archive; nothing was imported.")
    for name, expected in manifest["files"].items():
        if _stored_digest(name) != expected:
            raise BackupError(f"The stored file {name} read back differs from the archive.")
