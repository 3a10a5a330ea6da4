"""Template helpers for the site's pages: marked-up transcripts, proportions and charts."""

import textwrap

from django import template
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from kb import statistics

register = template.Library()


def _current(highlights, text: str) -> list:
    # A highlight whose offsets no longer select its quote (the text was edited) is not marked.
    return [h for h in highlights if h.end <= len(text) and text[h.start : h.end] == h.quote]


@register.simple_tag
def marked_source(text: str, highlights) -> SafeString:
    """The source text exactly as stored (so selection offsets in the page are offsets in the
    text), with each highlighted passage in a <mark> naming its themes. Overlapping highlights
    split into segments; an empty anchor `highlight-<id>` marks where each one starts."""
    highlights = _current(list(highlights), text)
    cuts = sorted({0, len(text), *[h.start for h in highlights], *[h.end for h in highlights]})
    parts = []
    for start, end in zip(cuts, cuts[1:], strict=False):
        parts += [
            format_html('<span id="highlight-{}"></span>', h.pk)
            for h in highlights
            if h.start == start
        ]
        covering = [h for h in highlights if h.start <= start and end <= h.end]
        segment = escape(text[start:end])
        if not covering:
            parts.append(segment)
            continue
        themes = sorted({theme.name for h in covering for theme in h.themes.all()})
        colour = next(iter(covering[-1].themes.all()), None)
        # Focusable, so the keyboard reaches each passage; its description (the page renders
        # `highlight-<id>-themes`) tells screen readers its themes.
        parts.append(
            format_html(
                '<mark class="hl" tabindex="0" title="{}" aria-describedby="{}" data-colour="{}">'
                "{}</mark>",
                ", ".join(themes),
                " ".join(f"highlight-{h.pk}-themes" for h in covering),
                colour.colour if colour else "#f0b429",
                segment,
            )
        )
    return mark_safe("".join(str(part) for part in parts))  # noqa: S308 - parts are escaped


@register.filter
def percent(value: float | None, digits: int = 0) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


@register.filter
def signed(value: float | None, digits: int = 3) -> str:
    return "—" if value is None else f"{value:+.{digits}f}"


# Statistics print "undefined" where they are None: a constant difference has no interval and
# no p-value, and a dash would read as "not entered" or as zero.
UNDEFINED = "undefined"


@register.filter
def statistic(value: float | None, digits: int = 4) -> str:
    """0.012345678 -> "0.01235" (significant digits); None -> "undefined"."""
    return UNDEFINED if value is None else f"{value:.{digits}g}"


@register.filter
def signed_statistic(value: float | None, digits: int = 4) -> str:
    """0.012345678 -> "+0.01235"; None -> "undefined"."""
    return UNDEFINED if value is None else f"{value:+.{digits}g}"


@register.filter
def p_value(value: float | None) -> str:
    """0.01234 -> "0.0123", 0.00001 -> "< 0.001", None -> "undefined"."""
    if value is None:
        return UNDEFINED
    return "< 0.001" if value < 0.001 else f"{value:.3g}"


@register.filter
def values_list(values, digits: int = 4) -> str:
    """Per-seed values to `digits` decimals, as the means beside them: [0.812345, 0.8] ->
    "0.8123, 0.8000"; a missing value (a seed whose metric was not finite) is "undefined"."""
    return ", ".join(
        UNDEFINED if value is None else f"{value:.{digits}f}" for value in values or []
    )


@register.filter
def share(value: float | None) -> str:
    """A proportion as a percentage; None (nothing to count) -> "undefined"."""
    return UNDEFINED if value is None else percent(value)


@register.filter
def share_interval(proportion: dict) -> str:
    """A proportion's 95% Wilson interval, "12%–40%", or "undefined" when n is 0."""
    if proportion["ci_low"] is None:
        return UNDEFINED
    return f"{percent(proportion['ci_low'])}–{percent(proportion['ci_high'])}"


@register.simple_tag
def outcome_summary(outcome) -> dict:
    """kb.statistics.outcome_summary: the computed verdict and why, warnings, range notes and
    the run's settings. Reads only the outcome, its change and its run (no queries when they
    are loaded)."""
    return statistics.outcome_summary(outcome)


@register.simple_tag
def outcome_settings(outcome) -> str:
    """One line saying what a measured outcome trained on, e.g. "shapes (2000 examples),
    3 epochs, seeds 0, 1, 2"; "entered by hand" for a manual outcome, "a study round" for
    a study's (its settings are on the study's page)."""
    if outcome.source == "study":
        return "a study round"
    if outcome.analysis_run is None:
        return "entered by hand"
    return settings_text(
        statistics.run_settings(
            outcome.analysis_run.config,
            fallback_spec=outcome.change.target_model.architecture_spec,
        )
    )


@register.filter
def settings_text(settings: dict) -> str:
    """run_settings as one line: "shapes (2000 examples), 3 epochs, seeds 0, 1, 2"."""
    size = settings["dataset_size"]
    examples = "all examples" if size is None else f"{size} examples"
    dataset = f"{settings['dataset']} ({examples})" if settings["dataset"] else "dataset unknown"
    seeds = ", ".join(map(str, settings["seeds"])) or "not recorded"
    return f"{dataset}, {settings['epochs']} epochs, seeds {seeds}"


CHART_WIDTH, LABEL_WIDTH, ROW_HEIGHT = 640, 220, 28
# A label is wrapped onto lines of at most this many characters, never cut.
LABEL_CHARS, LINE_HEIGHT = 34, 13


@register.simple_tag
def proportion_chart(rows, title: str) -> SafeString:
    """A horizontal bar chart of proportions with 95% interval whiskers, as inline SVG.

    rows: [(label, {"share", "ci_low", "ci_high", "count", "n"})]; share is None when n is 0,
    and such a row shows no bar and no interval, only "none counted". Long labels wrap onto
    several lines. The table next to each chart carries the same numbers for screen readers;
    the SVG has a title."""
    parts, top = [], 0
    for label, p in rows:
        row, height = _chart_row(label, p, top)
        parts.append(row)
        top += height
    bars = mark_safe("".join(parts))  # noqa: S308 - every part built by format_html
    axis_y, height = top + 8, top + 30
    ticks = format_html_join(
        "",
        '<line x1="{0}" x2="{0}" y1="0" y2="{1}" class="grid"/>'
        '<text x="{0}" y="{2}" class="tick" text-anchor="middle">{3}%</text>',
        ((round(_chart_x(t / 100), 1), axis_y, axis_y + 16, t) for t in (0, 25, 50, 75, 100)),
    )
    return format_html(
        '<svg class="chart" viewBox="0 0 {} {}" role="img" aria-labelledby="{}-t">'
        '<title id="{}-t">{} (bars: share; lines: 95% Wilson interval)</title>{}{}</svg>',
        CHART_WIDTH, height, _slug(title), _slug(title), title, ticks, bars,
    )  # fmt: skip


def _chart_x(share: float) -> float:
    return LABEL_WIDTH + share * (CHART_WIDTH - LABEL_WIDTH - 20)


def _chart_row(label, p: dict, top: int) -> tuple[SafeString, int]:
    """One row of proportion_chart starting at `top`, and its height."""
    lines = textwrap.wrap(str(label), LABEL_CHARS, break_long_words=True) or [""]
    height = max(ROW_HEIGHT, LINE_HEIGHT * len(lines) + 10)
    middle = top + height // 2
    first = middle + 4 - LINE_HEIGHT * (len(lines) - 1) / 2
    tspans = format_html_join(
        "",
        '<tspan x="{}" y="{}">{}</tspan>',
        (
            (LABEL_WIDTH - 8, round(first + LINE_HEIGHT * i, 1), text)
            for i, text in enumerate(lines)
        ),
    )
    if not p["n"]:
        return format_html(
            '<g><text class="label" text-anchor="end">{}</text>'
            '<text x="{}" y="{}" class="value">none counted</text></g>',
            tspans, LABEL_WIDTH + 4, middle + 4,
        ), height  # fmt: skip
    x = _chart_x
    return format_html(
        '<g><text class="label" text-anchor="end">{}</text>'
        '<rect x="{}" y="{}" width="{}" height="14" class="bar"/>'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="ci"/>'
        '<text x="{}" y="{}" class="value">{} of {}</text></g>',
        tspans, LABEL_WIDTH, middle - 7, round(x(p["share"]) - LABEL_WIDTH, 1),
        round(x(p["ci_low"]), 1), round(x(p["ci_high"]), 1), middle, middle,
        round(x(p["ci_high"]) + 4, 1), middle + 4, p["count"], p["n"],
    ), height  # fmt: skip


def _slug(text: str) -> str:
    return "chart-" + "".join(c if c.isalnum() else "-" for c in text.lower())[:40]


@register.filter
def pretty_json(value) -> str:
    import json

    return json.dumps(value, indent=2, sort_keys=True, default=str)


@register.filter
def without(mapping: dict, key: str) -> dict:
    return {k: v for k, v in (mapping or {}).items() if k != key}


@register.filter
def get_item(mapping: dict, key: str):
    return (mapping or {}).get(key)


@register.filter
def environment_text(environment: dict) -> str:
    """Where a run's jobs ran, one clause per distinct environment, e.g. "worker-1 (cpu; torch
    2.13.0, numpy 2.4.6, Python 3.11.2; code 1a2b3c4d): 9 jobs"; "" before any job finished."""
    places = []
    for place in (environment or {}).get("jobs", []):
        env = place.get("environment") or {}
        revision = str(env.get("code_revision") or "unknown")[:8]
        jobs = len(place.get("jobs", []))
        places.append(
            f"{env.get('host') or 'unknown host'} ({env.get('device') or '?'}; "
            f"torch {env.get('torch') or '?'}, numpy {env.get('numpy') or '?'}, "
            f"Python {env.get('python') or '?'}; code {revision}): "
            f"{jobs} job{'' if jobs == 1 else 's'}"
        )
    return "; ".join(places)


@register.filter
def level(value: float) -> str:
    """An interval's confidence level as a percentage without trailing zeros: 0.95 -> "95%",
    0.999 -> "99.9%"."""
    return f"{float(value) * 100:g}%"
