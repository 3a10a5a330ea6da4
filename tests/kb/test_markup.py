"""The Markdown renderer: its sanitiser against a corpus of XSS payloads, and its bounds
against text built to make rendering slow or deeply nested."""

import re
import time
from html.parser import HTMLParser

import pytest

from kb.markup import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_TAGS,
    ALLOWED_URL_SCHEMES,
    MAX_MARKUP_MARKS,
    MAX_NESTING,
    MAX_TAGS,
    render_markdown,
)

XSS_PAYLOADS = [
    "<script>alert(1)</script>",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>",
    '<img src=x onerror="alert(1)">',
    '<img src="javascript:alert(1)">',
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    "[click](&#106;avascript:alert(1))",
    "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '<a href="javascript:alert(1)">x</a>',
    '<iframe src="https://evil.example"></iframe>',
    '<div style="background:url(javascript:alert(1))">x</div>',
    '<p style="color:red">styled</p>',
    "<svg onload=alert(1)>",
    '<body onload="alert(1)">',
    '<details open ontoggle="alert(1)">',
    "<object data=x></object><embed src=x>",
    '<form action="javascript:alert(1)"><button>x</button></form>',
    "<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>",
    '<a href="vbscript:msgbox(1)">x</a>',
    "<<script>script>alert(1)<</script>/script>",
    '<input autofocus onfocus="alert(1)">',
    "![x](javascript:alert(1))",
    '<meta http-equiv="refresh" content="0;url=javascript:alert(1)">',
    "<style>body{display:none}</style>",
    '<base href="javascript:/">',
    "```\n<script>alert(1)</script>\n```",
]

FORBIDDEN = [
    re.compile(r"<\s*script", re.I),
    re.compile(r"<\s*iframe", re.I),
    re.compile(r"<\s*(object|embed|form|input|meta|base|svg|math|style|body|details)\b", re.I),
    re.compile(r"\son[a-z]+\s*=", re.I),
    re.compile(r"javascript:", re.I),
    re.compile(r"vbscript:", re.I),
    re.compile(r"data:text/html", re.I),
    re.compile(r"\sstyle\s*=", re.I),
]


@pytest.mark.parametrize("payload", XSS_PAYLOADS)
def test_payload_is_neutralised(payload):
    html = render_markdown(payload)
    for pattern in FORBIDDEN:
        assert not pattern.search(html), (payload, html)


def test_ordinary_markdown_survives():
    html = render_markdown("**bold** and [a link](https://example.org) and `code`\n\n- item")
    assert "<strong>bold</strong>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">a link</a>' in html
    assert "<code>code</code>" in html
    assert "<li>item</li>" in html


def test_code_blocks_show_markup_as_text():
    html = render_markdown("```\n<script>alert(1)</script>\n```")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_empty_text_renders_empty():
    assert render_markdown("") == ""
    assert render_markdown(None) == ""


# --- text that must not make rendering slow or deep ---------------------------------------

MAX_TEXT = 2 * 1024 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE: the longest text a form or the API takes
PATHOLOGICAL = {
    "list nested by two spaces": "".join("  " * i + f"- item {i}\n" for i in range(1000)),
    "list nested by four spaces": "".join("    " * i + f"- item {i}\n" for i in range(1000)),
    "list nested by tabs": "".join("\t" * i + f"- item {i}\n" for i in range(1000)),
    "ordered list nested": "".join("   " * i + f"1. item {i}\n" for i in range(1000)),
    "quotes": ">" * 100_000 + " deep\n",
    "spaced quotes": "> " * 100_000 + "deep\n",
    "quote on every line": "".join(">" * i + " x\n" for i in range(1000)),
    "list markers on one line": "- " * 100_000 + "x",
    "quotes and lists": "> - 1. " * 50_000 + "x",
    "emphasis run": "*" * MAX_TEXT,
    "underscore run": "_" * MAX_TEXT,
    "nested emphasis": ("*a **a " * 100_000) + "b" + (" a** a*" * 100_000),
    "nested brackets": "[" * 500_000 + "x" + "]" * 500_000 + "(javascript:alert(1))",
    "link openers": "[a" * 500_000,
    "image openers": "![" * 500_000,
    "unclosed links": "[a](b" * 200_000,
    "unclosed tags": "<a " * 500_000,
    "nested divs": "<div>\n" * 300_000,
    "nested spans": "<span>" * 300_000,
    "backticks": "".join("e" + "`" * i for i in range(1, 2000)),
    "table rows": "|a|b|\n|-|-|\n" + "|x|y|\n" * 300_000,
    "setext headings": "a\n=\n" * 500_000,
    "reference definitions": "".join(f"[{i}]: /u{i}\n[{i}]\n" for i in range(80_000)),
    "images among reference definitions": ("![![![" + "[a]: /u\n") * 130_000,
    "not a fence, then a deep list": "```a`\n" + "".join("  " * i + "- a\n" for i in range(1000)),
    "script in the tail": "*a*\n" * 5000 + "<script>alert(1)</script>\n",
}


class _Depth(HTMLParser):
    """The deepest nesting of elements, per tag and in all."""

    VOID = {"br", "hr", "img"}

    def __init__(self, html: str) -> None:
        super().__init__()
        self.open: list[str] = []
        self.deepest, self.deepest_of = 0, {}
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.open.append(tag)
            self.deepest = max(self.deepest, len(self.open))
            depth = self.open.count(tag)
            self.deepest_of[tag] = max(self.deepest_of.get(tag, 0), depth)

    def handle_endtag(self, tag):
        if tag not in self.VOID:
            self.open.pop()


def assert_safe(html: str) -> None:
    """Only allowed tags and attributes, and links only to allowed schemes."""
    for tag, attributes in re.findall(r"<([a-z0-9]+)((?:\s[^>]*)?)>", html):
        assert tag in ALLOWED_TAGS, tag
        for name, value in re.findall(r'\s([a-z-]+)="([^"]*)"', attributes):
            assert name in ALLOWED_ATTRIBUTES.get(tag, set()) | {"rel"}, (tag, name)
            if name in ("href", "src"):
                assert value.split(":")[0] in ALLOWED_URL_SCHEMES or ":" not in value, value


@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_text_renders_quickly_shallow_and_safe(name):
    text = PATHOLOGICAL[name]
    assert len(text) <= MAX_TEXT
    started = time.perf_counter()
    html = render_markdown(text)
    elapsed = time.perf_counter() - started
    assert html
    assert_safe(html)
    assert "<script" not in html
    depth = _Depth(html)
    assert depth.deepest_of.get("ul", 0) <= MAX_NESTING
    assert depth.deepest_of.get("ol", 0) <= MAX_NESTING
    assert depth.deepest_of.get("blockquote", 0) <= MAX_NESTING
    assert depth.deepest <= max(4 * MAX_NESTING, MAX_TAGS + 2)
    # A safety net only: the bounds above are what keep rendering linear.
    assert elapsed < 2.0, f"{name}: {elapsed:.2f}s"


@pytest.mark.parametrize("indent", ["  ", "    ", "\t"])
def test_a_list_nested_a_thousand_levels_keeps_every_item(indent):
    text = "".join(indent * i + f"- item {i}\n" for i in range(1000))
    html = render_markdown(text)
    depth = _Depth(html)
    assert 2 <= depth.deepest_of["ul"] <= MAX_NESTING
    assert all(f"item {i}\n" in html or f"item {i}<" in html for i in range(1000))


def test_quotes_past_the_limit_show_as_text():
    html = render_markdown(">" * 1000 + " deep")
    assert _Depth(html).deepest_of["blockquote"] == MAX_NESTING
    assert "&gt;" * (1000 - MAX_NESTING) + " deep" in html


def test_lists_within_the_limit_render_as_before():
    text = "- a\n  - b\n    - c\n\n1. one\n2. two\n\n> quoted\n> > twice"
    html = render_markdown(text)
    assert _Depth(html).deepest_of == {"ul": 3, "li": 3, "ol": 1, "blockquote": 2, "p": 1}


def test_deep_indentation_inside_fenced_code_is_kept():
    code = " " * 40 + "return x"
    assert render_markdown(f"```\n{code}\n```") == f"<pre><code>{code}\n</code></pre>"


def test_text_past_the_markup_budget_shows_as_plain_paragraphs():
    lines = MAX_MARKUP_MARKS // 3  # "*a*\n" holds three markup characters
    html = render_markdown("*a*\n" * (lines + 2) + "\n<b>tail</b>")
    assert html.count("<em>a</em>") == lines
    assert html.endswith("</p><p>*a*<br>*a*</p><p>&lt;b&gt;tail&lt;/b&gt;</p>")


def test_raw_html_tables_and_links_still_render():
    html = render_markdown("<kbd>Ctrl</kbd>\n\n|a|b|\n|-|-|\n|1|2|\n\n<https://example.org>")
    assert "<kbd>Ctrl</kbd>" in html
    assert "<td>1</td>" in html
    assert '<a href="https://example.org" rel="noopener noreferrer nofollow">' in html
