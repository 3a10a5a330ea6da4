"""Markdown rendering with an allow-list sanitiser: the only way user text becomes HTML.

Any text a researcher can save must render fast, or one insight could make a page unusable
for everyone. Three rules keep the work bounded whatever the text (measured: well under
0.3 s for any text up to the 2 MB a request may carry):

- the parser (markdown-it, CommonMark) takes time linear in its input; Python-Markdown,
  used before, took seconds on a few kilobytes of unmatched brackets or unclosed tags, and
  a list nested 1,000 levels deep exhausted the stack;
- a line opens at most MAX_NESTING containers (quotes, list items, indentation); deeper
  markers are shown as text, so lists and quotes nest at most that deep and the HTML the
  sanitiser parses stays shallow (html5ever's cost grows with the square of the depth);
- at most MAX_MARKUP_MARKS markup characters, MAX_TAGS of them tags, are rendered as
  Markdown (the parser's cost per markup character is bounded, not small); the lines after
  that point are shown as plain paragraphs. Written text holds one markup character in 12
  to 25, so only text past some 40 to 70 KB is shown plain.
"""

import html
import re

import nh3
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

ALLOWED_TAGS = {
    "a",
    "abbr",
    "b",
    "blockquote",
    "br",
    "code",
    "dd",
    "del",
    "div",
    "dl",
    "dt",
    "em",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "hr",
    "i",
    "img",
    "kbd",
    "li",
    "ol",
    "p",
    "pre",
    "s",
    "span",
    "strong",
    "sub",
    "sup",
    "table",
    "tbody",
    "td",
    "th",
    "thead",
    "tr",
    "ul",
}
# No style and no on* handlers anywhere; links and images keep only what they need.
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"},
    "abbr": {"title"},
    "img": {"src", "alt", "title"},
    "td": {"align"},
    "th": {"align"},
    "code": {"class"},
}
ALLOWED_URL_SCHEMES = {"http", "https", "mailto"}

MAX_NESTING = 8
MAX_MARKUP_MARKS = 3_000
MAX_TAGS = 500
# Characters that can start or shape Markdown or HTML (markdown-it's terminators, plus line
# breaks, brackets and table pipes): the renderer's work grows with them, not with prose.
MARKUP_MARK = re.compile(r"[\n!#$%&()*+\-:<=>@\[\\\]^_`{|}~]")
# One container a line can open: a quote marker or a list marker, after any indentation.
CONTAINER = re.compile(r"[ \t]*(?:>|[-+*](?=[ \t]|$)|[0-9]{1,9}[.)](?=[ \t]|$))")
INDENT = re.compile(r"[ \t]*")
# Fenced code opens with three backticks (no backtick after them) or tildes, and closes with
# at least as many of the same, alone on their line.
OPENING_FENCE = re.compile(r" {0,3}(`{3,}(?=[^`]*$)|~{3,})")
CLOSING_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})[ \t]*$")

# markdown-it's own cap drops what lies deeper, so it sits well past what flattening lets
# through (a list level is two of its levels, a list and its item).
_markdown = MarkdownIt("commonmark", {"html": True, "maxNesting": 4 * MAX_NESTING + 8})
_markdown.enable("table")
# URLs are judged in one place, by the sanitiser's allowed schemes below.
_markdown.validateLink = lambda url: True


def render_markdown(text: str | None) -> SafeString:
    """Render Markdown to HTML that is safe to put on a page (scripts, handlers, styles,
    iframes and javascript: URLs removed), in time linear in the text's length."""
    markdown_part, plain_part = _split_at_budget(text or "")
    cleaned = nh3.clean(
        _markdown.render(_flatten_nesting(markdown_part)),
        tags=ALLOWED_TAGS,
        attributes=ALLOWED_ATTRIBUTES,
        url_schemes=ALLOWED_URL_SCHEMES,
        link_rel="noopener noreferrer nofollow",
        strip_comments=True,
    )
    # The plain part is escaped whole, so it needs no sanitising.
    return mark_safe(cleaned.strip() + _plain(plain_part))  # noqa: S308 - nh3 and escape


def _split_at_budget(text: str) -> tuple[str, str]:
    """(Markdown part, plain part): the cut falls at the start of the line holding the first
    markup character over MAX_MARKUP_MARKS, or the first tag over MAX_TAGS."""
    tags = 0
    for marks, mark in enumerate(MARKUP_MARK.finditer(text), start=1):
        tags += mark.group() == "<"
        if marks > MAX_MARKUP_MARKS or tags > MAX_TAGS:
            cut = text.rfind("\n", 0, mark.start()) + 1
            return text[:cut], text[cut:]
    return text, ""


def _flatten_nesting(text: str) -> str:
    """Show container markers past MAX_NESTING levels as text. Indentation counts a level
    per two columns (the least a nested list item needs); fenced code is left alone."""
    lines, fence = text.split("\n"), None
    for index, line in enumerate(lines):
        if fence is not None:
            closing = CLOSING_FENCE.match(line)
            if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
                fence = None
        elif opening := OPENING_FENCE.match(line):
            fence = opening.group(1)
        else:
            lines[index] = _flatten_line(line)
    return "\n".join(lines)


def _flatten_line(line: str) -> str:
    position, depth = 0, 0
    while container := CONTAINER.match(line, position):
        indent = INDENT.match(line, position).end()
        depth += len(line[position:indent].expandtabs(4)) // 2 + 1
        if depth > MAX_NESTING:
            return line[:position] + " " + _as_text(line[indent:])
        position = container.end()
    return line


def _as_text(rest: str) -> str:
    """`rest`, which starts with a quote or list marker, with that marker escaped."""
    digits = len(rest) - len(rest.lstrip("0123456789"))
    return rest[:digits] + "\\" + rest[digits:]


def _plain(text: str) -> str:
    """Text past the budget, as escaped paragraphs with its line breaks kept."""
    paragraphs = (part.strip("\n") for part in re.split(r"\n\s*\n", text))
    return "".join(
        "<p>" + html.escape(part).replace("\n", "<br>") + "</p>" for part in paragraphs if part
    )
