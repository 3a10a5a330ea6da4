"""Exchange formats: files other tools read and write, turned into plain data and back.

- `refi_qda`: the REFI-QDA standard of qualitative tools (MAXQDA, ATLAS.ti, NVivo, QualCoder,
  Taguette): a codebook as `.qdc` (XML) and a whole coding project as `.qdpx` (a zip holding
  `project.qde` and the sources' text under `sources/`).
- `codebook_csv`: the codebook as CSV with `tag`, `description` and `parent` columns, the
  columns Taguette's codebook import reads.

Nothing here touches the database: kb/services/exchange.py reads records into these plain
values for an export, and turns values read from a file into service calls for an import.
A file that cannot be read is refused with `ExchangeFileRefused`, whose messages say why in
words for its uploader; refusing while reading is what keeps a bad file from writing anything.
"""

from django.conf import settings
from django.core.exceptions import ValidationError

# An uploaded .qdc or .qdpx may be at most settings.EXCHANGE_MAX_UPLOAD_SIZE large; what a
# .qdpx unpacks to, at most UNPACKED_LIMIT_FACTOR times that (a small zip that inflates to
# gigabytes is refused).
UNPACKED_LIMIT_FACTOR = 5
# An imported project may hold at most this many text sources and coded selections (all
# sources together): an import writes in one transaction, and a bigger one would hold the
# database's write lock for long. Split a bigger project into several files.
MAX_SOURCES = 500
MAX_SELECTIONS = 5000


class ExchangeFileRefused(ValidationError):
    """The file cannot be read (or imported); the messages say why, for its uploader."""


def size_in_words(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MiB"
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"


def max_upload_size() -> int:
    return settings.EXCHANGE_MAX_UPLOAD_SIZE


def max_unpacked_size() -> int:
    return UNPACKED_LIMIT_FACTOR * max_upload_size()


def max_request_size() -> int:
    """The largest request body an import may send: the file, plus what a form around it
    may hold."""
    return settings.DATA_UPLOAD_MAX_MEMORY_SIZE + max_upload_size()


def refuse_declared_request_too_large(content_length: str | None) -> None:
    """Refused when a request's declared length (its Content-Length header) is over
    max_request_size(): checked before the body is read."""
    if content_length and content_length.isdigit() and int(content_length) > max_request_size():
        raise ExchangeFileRefused(
            f"The upload is {size_in_words(int(content_length))}; a file may be at most "
            f"{size_in_words(max_upload_size())}."
        )


def refuse_too_large(size: int) -> None:
    limit = max_upload_size()
    if size > limit:
        raise ExchangeFileRefused(
            f"The file is {size_in_words(size)}; it may be at most {size_in_words(limit)}."
        )


def read_upload(file) -> bytes:
    """An uploaded file's bytes (a Django UploadedFile); its size is checked before it is read,
    and no more than the limit is read whatever it claims."""
    refuse_too_large(file.size)
    data = file.read(max_upload_size() + 1)
    refuse_too_large(len(data))
    return data
