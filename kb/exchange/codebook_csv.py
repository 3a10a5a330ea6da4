"""The codebook as CSV, in the columns Taguette's codebook import reads.

One row per code, parents before their children:

    tag,description,parent
    Actionability,Wants steps they can take.,
    Actionability/Next steps,,Actionability

`tag` is the code's path from the top of the codebook (names joined by "/"): Taguette has no
nesting and wants every tag's name unique in a project, so two sub-themes both called
"Other" stay apart, and the hierarchy survives in tools that read only this column.
`parent` is the parent's path, exactly the `tag` of another row ("" at the top).
"""

import csv
import io

from kb.exchange.refi_qda import Code, codes_flattened

COLUMNS = ["tag", "description", "parent"]
PATH_SEPARATOR = "/"


def codebook_csv_rows(codes: tuple[Code, ...]) -> list[list[str]]:
    """Out: [tag path, description, parent path] per code, parents first."""
    paths: dict[str, str] = {}
    rows = []
    for code, parent in codes_flattened(codes):
        parent_path = paths[parent.guid] if parent is not None else ""
        path = f"{parent_path}{PATH_SEPARATOR}{code.name}" if parent_path else code.name
        paths[code.guid] = path
        rows.append([path, code.description, parent_path])
    return rows


def codebook_csv_write(codes: tuple[Code, ...]) -> str:
    """The codebook as CSV text (header first; RFC 4180 quoting, CRLF line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(COLUMNS)
    writer.writerows(codebook_csv_rows(codes))
    return out.getvalue()
