"""export_kb and import_kb: a whole knowledge base, stored files included, round-trips into an
empty database with the same counts, checksums and pages; anything else is refused with
nothing written."""

import json
import re
import shutil
import stat
import struct
import zipfile
from contextlib import contextmanager
from io import StringIO
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.urls import reverse
from rest_framework.authtoken.models import Token

from kb.models import SubjectModel, Theme
from kb.services.backup import backup_import, table_checksums
from kb.services.subjects import subject_model_create
from tests.factories import SHAPES_SPEC, ThemeFactory
from tests.helpers import nothing_written
from tests.kb.pages import PNG, TRANSCRIPT, world_build

pytestmark = pytest.mark.django_db

# The smallest safetensors file: an 8-byte header length, then an empty JSON header.
WEIGHTS = struct.pack("<Q", 2) + b"{}"
# Per-request values in a page: CSRF tokens and CSP nonces.
VOLATILE = re.compile(rb'(value="[A-Za-z0-9]{32,}"|nonce="[^"]*")')


@pytest.fixture
def media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def knowledge_base(media):
    """One linked record of every kind (tests.kb.pages) with a run figure in storage, a model
    with weights, an API token, a group of its own and a direct permission, and a deleted
    theme whose key history still names."""
    world = world_build()
    user = get_user_model().objects.create_user(username="rita")
    weighted = subject_model_create(
        actor=user,
        name="Weighted CNN",
        kind=SubjectModel.Kind.BUILTIN,
        architecture_spec=SHAPES_SPEC,
        weights=ContentFile(WEIGHTS, name="weighted.safetensors"),
    )
    reviewers = Group.objects.create(name="reviewers")
    reviewers.permissions.add(Permission.objects.get(codename="view_event"))
    user.groups.add(reviewers, Group.objects.get(name="researcher"))
    user.user_permissions.add(Permission.objects.get(codename="view_researcher"))
    Token.objects.create(user=user)
    deleted = ThemeFactory()
    deleted_pk = deleted.pk
    deleted.delete()
    return SimpleNamespace(world=world, user=user, weighted=weighted, deleted_theme=deleted_pk)


@pytest.fixture
def small_kb(media):
    """A theme, a user with an API token, and a stored file: enough for the refusals."""
    theme = ThemeFactory()
    user = get_user_model().objects.create_user(username="rita")
    token = Token.objects.create(user=user)
    stored = default_storage.save("weights/small.safetensors", ContentFile(WEIGHTS))
    return SimpleNamespace(theme=theme, user=user, token=token, stored=stored)


@pytest.fixture
def archive(small_kb, tmp_path):
    path = tmp_path / "kb-backup.zip"
    call_command("export_kb", path, stdout=StringIO())
    return path


@contextmanager
def restorable_losses(small_kb):
    """A token and a stored file the archive holds are gone here: an import that wrote
    anything would bring them back. Checks afterwards that nothing came back."""
    small_kb.token.delete()
    default_storage.delete(small_kb.stored)
    with nothing_written():
        yield
    assert not Token.objects.exists()
    assert not default_storage.exists(small_kb.stored)


def _empty_database_and_storage(media) -> None:
    """What a lost server leaves: a freshly migrated database and an empty storage."""
    # The test's transaction still holds deferred foreign-key checks, which TRUNCATE refuses.
    connection.check_constraints()
    call_command("flush", interactive=False, verbosity=0)
    shutil.rmtree(media, ignore_errors=True)


def _pages(client, kb) -> dict[str, tuple[int, bytes]]:
    """Status and body of a few pages and both kinds of stored file, as the signed-in user."""
    client.force_login(get_user_model().objects.get(username="rita"))
    run = kb.world.run
    urls = {
        "insight": reverse("insight-detail", args=[kb.world.insight.pk]),
        "interview": reverse("interview-detail", args=[kb.world.interview.pk]),
        "run": reverse("run-detail", args=[run.pk]),
        "figure": reverse("run-figure", args=[run.pk, "arms"]),
        "weights": reverse("model-weights", args=[kb.weighted.pk]),
    }
    pages = {}
    for name, url in urls.items():
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        pages[name] = (response.status_code, VOLATILE.sub(b"", body))
    return pages


def _manifest(path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return json.loads(archive.read("manifest.json"))


def _damaged_copy(path, tmp_path, replaced: dict[str, bytes]):
    """A copy of the archive with some members' contents replaced."""
    copy = tmp_path / "damaged.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(copy, "w") as target:
        for member in source.namelist():
            target.writestr(member, replaced.get(member, source.read(member)))
    return copy


def test_a_knowledge_base_round_trips_into_an_empty_database(knowledge_base, client, media):
    pages_before = _pages(client, knowledge_base)
    before = table_checksums()
    path = media.parent / "kb-backup.zip"

    call_command("export_kb", path, stdout=StringIO())
    _empty_database_and_storage(media)
    out = StringIO()
    call_command("import_kb", path, stdout=out)

    manifest = _manifest(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert manifest["format_version"] == 1
    assert manifest["tables"] == before
    assert table_checksums() == before
    assert sorted(manifest["files"]) == [
        knowledge_base.world.run.result["figures"]["arms"],
        "weights/weighted.safetensors",
    ]
    for label in ("kb.event", "kb.historicalinsight", "kb.historicaltheme", "authtoken.token"):
        assert before[label]["rows"] > 0, label
    assert "Row counts and checksums match the archive." in out.getvalue()
    pages_after = _pages(client, knowledge_base)
    assert pages_after == pages_before
    assert {status for status, _ in pages_after.values()} == {200}
    assert knowledge_base.world.insight.title.encode() in pages_after["insight"][1]
    assert TRANSCRIPT.encode() in pages_after["interview"][1]
    assert (pages_after["figure"][1], pages_after["weights"][1]) == (PNG, WEIGHTS)
    # The deleted theme's key, still named by its history, is not handed out again.
    assert ThemeFactory().pk > knowledge_base.deleted_theme


def test_export_never_replaces_an_existing_file(db, tmp_path):
    path = tmp_path / "kept.zip"
    path.write_bytes(b"an earlier backup")

    with pytest.raises(CommandError, match="already exists"):
        call_command("export_kb", path, stdout=StringIO())

    assert path.read_bytes() == b"an earlier backup"
    assert [p.name for p in tmp_path.iterdir()] == ["kept.zip"]


def test_import_into_a_database_with_rows_is_refused(small_kb, archive):
    with restorable_losses(small_kb), pytest.raises(CommandError) as refused:
        call_command("import_kb", archive, stdout=StringIO())

    assert "holds 3 rows (auth.user: 1, kb.historicaltheme: 1, kb.theme: 1)" in str(refused.value)
    assert "pass --merge" in str(refused.value)


def test_merge_adds_missing_rows_and_skips_identical_ones(small_kb, archive):
    token_key = small_kb.token.key
    small_kb.token.delete()
    default_storage.delete(small_kb.stored)
    added_here = ThemeFactory(name="Added after the backup")

    summary = backup_import(archive, merge=True)

    assert {label: n for label, n in summary.written.items() if n} == {"authtoken.token": 1}
    assert summary.already_present["kb.theme"] == 1
    assert (summary.files_written, summary.files_already_present) == (1, 0)
    assert Token.objects.get().key == token_key
    with default_storage.open(small_kb.stored) as restored:
        assert restored.read() == WEIGHTS
    # A row the archive lacks stays; every table the archive holds is as it holds it.
    assert Theme.objects.filter(pk=added_here.pk).exists()
    after, archived = table_checksums(), _manifest(archive)["tables"]
    assert {label for label in archived if after[label] != archived[label]} == {
        "kb.theme",
        "kb.historicaltheme",
    }


def test_merge_with_a_row_changed_since_the_backup_is_refused(small_kb, archive):
    Theme.objects.filter(pk=small_kb.theme.pk).update(name="Renamed", colour="#000000")

    with restorable_losses(small_kb), pytest.raises(CommandError) as refused:
        call_command("import_kb", archive, "--merge", stdout=StringIO())

    assert f"kb.theme {small_kb.theme.pk}: colour, name differ" in str(refused.value)
    assert "nothing was imported" in str(refused.value)


def test_merge_that_breaks_a_unique_rule_is_refused_with_nothing_written(small_kb, archive):
    small_kb.user.delete()  # and its token
    default_storage.delete(small_kb.stored)
    get_user_model().objects.create_user(username="rita")  # the same name under another key

    with nothing_written(), pytest.raises(CommandError, match="do not fit this database"):
        call_command("import_kb", archive, "--merge", stdout=StringIO())

    assert list(get_user_model().objects.values_list("username", flat=True)) == ["rita"]
    assert not Token.objects.exists()
    assert not default_storage.exists(small_kb.stored)


def test_merge_refuses_to_replace_another_stored_file(small_kb, archive):
    default_storage.delete(small_kb.stored)
    default_storage.save(small_kb.stored, ContentFile(b"other weights"))
    small_kb.token.delete()

    with nothing_written(), pytest.raises(CommandError, match="Storage holds other files"):
        call_command("import_kb", archive, "--merge", stdout=StringIO())

    assert not Token.objects.exists()
    with default_storage.open(small_kb.stored) as kept:
        assert kept.read() == b"other weights"


def _manifest_with(path, **changes) -> bytes:
    manifest = _manifest(path)
    for key, value in changes.items():
        manifest[key] = value(manifest[key]) if callable(value) else value
    return json.dumps(manifest).encode()


def _future_migration(migrations: dict) -> dict:
    return {**migrations, "kb": [*migrations["kb"], "9999_future"]}


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda path: {"rows/kb.theme.jsonl": b'{"id":1}\n'}, "kb.theme does not match its"),
        (lambda path: {"files/weights/small.safetensors": b"x"}, "small.safetensors does not"),
        (lambda path: {"manifest.json": _manifest_with(path, format_version=2)}, "version 2;"),
        (
            lambda path: {"manifest.json": _manifest_with(path, migrations=_future_migration)},
            "this database lacks 9999_future",
        ),
        (lambda path: {"manifest.json": b"[]"}, "not an Insight KB backup"),
        (
            lambda path: {"manifest.json": _manifest_with(path, files={"../x": {}})},
            "outside storage",
        ),
    ],
    ids=["rows", "file", "format-version", "migrations", "manifest", "file-name"],
)
def test_a_damaged_or_foreign_archive_is_refused_with_nothing_written(
    small_kb, archive, tmp_path, damage, message
):
    damaged = _damaged_copy(archive, tmp_path, damage(archive))

    with restorable_losses(small_kb), pytest.raises(CommandError, match=message):
        call_command("import_kb", damaged, "--merge", stdout=StringIO())


def test_a_file_that_is_not_an_archive_is_refused(db, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("not a backup")

    with pytest.raises(CommandError, match="not a backup archive"):
        call_command("import_kb", path, stdout=StringIO())
