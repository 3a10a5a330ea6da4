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

from django.core.exceptions import ValidationError

# An uploaded .qdc or .qdpx may be at most this large; what a .qdpx unpacks to, at most
# UNPACKED_LIMIT_FACTOR times that (a small zip that inflates to gigabytes is refused).
MAX_UPLOAD_SIZE = 20 * 1024 * 1024
UNPACKED_LIMIT_FACTOR = 5


class ExchangeFileRefused(ValidationError):
    """The file cannot be read (or imported); the messages say why, for its uploader."""


def size_in_words(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / 1024 / 1024:.1f} MiB"
    return f"{size / 1024:.1f} KiB" if size >= 1024 else f"{size} bytes"


def max_upload_size() -> int:
    return MAX_UPLOAD_SIZE


def max_unpacked_size() -> int:
    return UNPACKED_LIMIT_FACTOR * MAX_UPLOAD_SIZE


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
