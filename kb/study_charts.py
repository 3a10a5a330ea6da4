"""A study's trajectory as a server-rendered SVG: the metric's mean against the parameter count,
one line per track with its 95% interval as a band, each point labelled with its round.

No script and no style attribute (the Content-Security-Policy refuses inline styles): every
colour comes from a class that kb/static/kb/studies.css styles. Every text is escaped by
format_html. The chart has a title and a description that says the same numbers in words.
"""

from collections.abc import Iterable

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 680, 380
LEFT, RIGHT, TOP, BOTTOM = 64, 128, 16, 48
PLOT_WIDTH, PLOT_HEIGHT = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
TICKS = 5
TRACK_ORDER = ("base", "guided", "random", "uniform")
TRACK_NAMES = {"base": "Base model", "guided": "Guided", "random": "Random", "uniform": "Uniform"}


def _ordered_tracks(trajectory: dict) -> list[str]:
    known = [track for track in TRACK_ORDER if track in trajectory]
    return known + sorted(set(trajectory) - set(TRACK_ORDER))


def _drawn(points: Iterable[dict]) -> list[dict]:
    """The points that can be placed: a parameter count and a defined mean."""
    return [p for p in points if p.get("parameters") is not None and p.get("mean") is not None]


def _domain(values: list[float], pad_share: float, minimum_pad: float) -> tuple[float, float]:
    low, high = min(values), max(values)
    pad = (high - low) * pad_share or minimum_pad
    return low - pad, high + pad


class _Scale:
    """Data -> SVG coordinates for one chart."""

    def __init__(self, points: list[dict]) -> None:
        params = [p["parameters"] for p in points]
        ys = [v for p in points for v in (p["mean"], p.get("ci_low"), p.get("ci_high"))
              if v is not None]  # fmt: skip
        self.x_domain = _domain(params, 0.05, max(1.0, abs(params[0]) * 0.05))
        self.y_domain = _domain(ys, 0.08, max(0.01, abs(ys[0]) * 0.02))

    def x(self, value: float) -> float:
        low, high = self.x_domain
        return round(LEFT + (value - low) / (high - low) * PLOT_WIDTH, 1)

    def y(self, value: float) -> float:
        low, high = self.y_domain
        return round(TOP + (high - value) / (high - low) * PLOT_HEIGHT, 1)


def _number(value: float | None, digits: int = 4) -> str:
    return "undefined" if value is None else f"{value:.{digits}g}"


def _interval(point: dict) -> str:
    if point.get("ci_low") is None or point.get("ci_high") is None:
        return "interval undefined"
    return f"95% CI {_number(point['ci_low'])} to {_number(point['ci_high'])}"


def _kept_words(point: dict) -> str:
    kept = point.get("kept")
    return "" if kept is None else (", kept" if kept else ", not kept")


def _point_phrase(point: dict) -> str:
    """In words, e.g. "round 2: 1,234 parameters, mean 0.91 (95% CI 0.9 to 0.92), kept"."""
    parameters = point.get("parameters")
    counted = "parameters unknown" if parameters is None else f"{parameters:,} parameters"
    return (
        f"round {point.get('round')}: {counted}, mean {_number(point.get('mean'))} "
        f"({_interval(point)}){_kept_words(point)}"
    )


def _point_words(track: str, point: dict) -> str:
    return f"{TRACK_NAMES.get(track, track)}, {_point_phrase(point)}"


def _axes(scale: _Scale, metric: str) -> SafeString:
    (x_low, x_high), (y_low, y_high) = scale.x_domain, scale.y_domain
    x_ticks = [x_low + (x_high - x_low) * i / (TICKS - 1) for i in range(TICKS)]
    y_ticks = [y_low + (y_high - y_low) * i / (TICKS - 1) for i in range(TICKS)]
    bottom, right = TOP + PLOT_HEIGHT, LEFT + PLOT_WIDTH
    return format_html(
        '<g class="axes">{}{}'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="axis"/>'
        '<line x1="{}" x2="{}" y1="{}" y2="{}" class="axis"/>'
        '<text x="{}" y="{}" class="axis-label" text-anchor="middle">Parameters</text>'
        '<text x="14" y="{}" class="axis-label" text-anchor="middle" '
        'transform="rotate(-90 14 {})">{}</text></g>',
        format_html_join(
            "",
            '<line x1="{0}" x2="{0}" y1="{1}" y2="{2}" class="grid"/>'
            '<text x="{0}" y="{3}" class="tick" text-anchor="middle">{4}</text>',
            ((scale.x(t), TOP, bottom, bottom + 16, f"{round(t):,}") for t in x_ticks),
        ),
        format_html_join(
            "",
            '<line x1="{0}" x2="{1}" y1="{2}" y2="{2}" class="grid"/>'
            '<text x="{3}" y="{4}" class="tick" text-anchor="end">{5}</text>',
            ((LEFT, right, scale.y(t), LEFT - 6, scale.y(t) + 4, _number(t, 3))
             for t in y_ticks),
        ),  # fmt: skip
        LEFT, right, bottom, bottom, LEFT, LEFT, TOP, bottom,
        LEFT + PLOT_WIDTH / 2, HEIGHT - 8, TOP + PLOT_HEIGHT / 2, TOP + PLOT_HEIGHT / 2, metric,
    )  # fmt: skip


def _interval_runs(points: list[dict]) -> list[list[dict]]:
    """Consecutive points that all have an interval: each run becomes one band."""
    runs: list[list[dict]] = [[]]
    for point in points:
        if point.get("ci_low") is not None and point.get("ci_high") is not None:
            runs[-1].append(point)
        elif runs[-1]:
            runs.append([])
    return [run for run in runs if run]


def _band(scale: _Scale, run: list[dict]) -> SafeString:
    if len(run) == 1:  # one point: its interval as a whisker
        p = run[0]
        x = scale.x(p["parameters"])
        return format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="band-whisker"/>',
            x, x, scale.y(p["ci_low"]), scale.y(p["ci_high"]),
        )  # fmt: skip
    upper = [(scale.x(p["parameters"]), scale.y(p["ci_high"])) for p in run]
    lower = [(scale.x(p["parameters"]), scale.y(p["ci_low"])) for p in reversed(run)]
    corners = " ".join(f"{x},{y}" for x, y in upper + lower)
    return format_html('<polygon points="{}" class="band"/>', corners)


def _track(scale: _Scale, track: str, points: list[dict]) -> SafeString:
    bands = mark_safe("".join(_band(scale, run) for run in _interval_runs(points)))  # noqa: S308
    line = " ".join(f"{scale.x(p['parameters'])},{scale.y(p['mean'])}" for p in points)
    marks = format_html_join(
        "",
        '<g class="point{}"><circle cx="{}" cy="{}" r="4"><title>{}</title></circle>'
        '<text x="{}" y="{}" class="round-label">r{}</text></g>',
        (
            (" not-kept" if p.get("kept") is False else "",
             scale.x(p["parameters"]), scale.y(p["mean"]), _point_words(track, p),
             scale.x(p["parameters"]) + 6, scale.y(p["mean"]) - 6, p.get("round"))
            for p in points
        ),
    )  # fmt: skip
    return format_html(
        '<g class="track track-{}">{}<polyline points="{}" class="line"/>{}</g>',
        track, bands, line, marks,
    )  # fmt: skip


def _legend(tracks: list[str]) -> SafeString:
    x = LEFT + PLOT_WIDTH + 16
    return format_html_join(
        "",
        '<g class="legend track-{0}"><line x1="{1}" x2="{2}" y1="{3}" y2="{3}" class="line"/>'
        '<text x="{4}" y="{5}">{6}</text></g>',
        ((track, x, x + 18, TOP + 10 + 20 * i, x + 24, TOP + 14 + 20 * i,
          TRACK_NAMES.get(track, track)) for i, track in enumerate(tracks)),
    )  # fmt: skip


def trajectory_description(trajectory: dict, *, metric: str) -> str:
    """The chart's numbers in words, one sentence per track."""
    sentences = []
    for track in _ordered_tracks(trajectory):
        words = "; ".join(_point_phrase(p) for p in trajectory[track] or [])
        sentences.append(f"{TRACK_NAMES.get(track, track)}: {words or 'no decided round'}.")
    return f"{metric} mean against parameter count. " + " ".join(sentences)


def trajectory_chart(trajectory: dict, *, metric: str, chart_id: str) -> SafeString:
    """In: {track: [{"round", "parameters", "mean", "ci_low", "ci_high", "kept"}]} (a study's
    trajectory; any number may be None), the metric's name, an id unique on the page.
    Out: an inline SVG, or "" when no point has a parameter count and a mean. A point without
    a mean is left out of the figure (the description says so); a point without an interval
    has no band."""
    drawable = {track: _drawn(trajectory[track] or []) for track in _ordered_tracks(trajectory)}
    every = [p for points in drawable.values() for p in points]
    if not every:
        return mark_safe("")  # noqa: S308 - empty
    scale = _Scale(every)
    tracks = [track for track, points in drawable.items() if points]
    lines = mark_safe("".join(_track(scale, t, drawable[t]) for t in tracks))  # noqa: S308
    return format_html(
        '<svg class="chart study-chart" viewBox="0 0 {} {}" role="img" '
        'aria-labelledby="{}-title {}-desc"><title id="{}-title">{} against parameters, per '
        "track (lines: mean; bands: 95% interval; labels: round)</title>"
        '<desc id="{}-desc">{}</desc>{}{}{}</svg>',
        WIDTH, HEIGHT, chart_id, chart_id, chart_id, metric, chart_id,
        trajectory_description(trajectory, metric=metric), _axes(scale, metric), lines,
        _legend(tracks),
    )  # fmt: skip
