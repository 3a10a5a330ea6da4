"""Agreement between coders, on the character positions of interview transcripts, as
qualitative tools compute it (pure Python; no Django, no torch).

For each theme, every character of the chosen transcripts is a unit, which each coder coded
(1) or not (0). A coder counts only on the interviews where they made at least one highlight
(any theme); elsewhere they are missing, not "coded nothing", and a unit seen by fewer than
two coders tells nothing. Krippendorff's alpha (nominal) is taken over all coders, Cohen's
kappa when there are exactly two, over the units both saw. "Overall" is the same over every
theme at once: each (theme, character) pair is a unit. A value the data leave undefined (one
coder, no characters, no variation) is None, never 0.

Why closed forms, not the `krippendorff` and scikit-learn functions the tests check them
against: those need one row (or column) per unit, and 50 long transcripts x 30 themes is
~90M units (GBs). For binary values both coefficients depend only on counts: alpha on how
many units have each pattern (m coders saw it, n1 of them coded it), kappa on the 2x2 table
of the two coders. Those counts come from sweeping each coder's merged span boundaries per
(interview, theme), so the cost grows with the number of spans, not with transcript length.
"""

from collections import Counter, defaultdict
from collections.abc import Iterable
from fractions import Fraction

# (coder id, theme id, interview id, start, end): characters [start, end) of the interview's
# transcript coded with the theme by the coder.
Span = tuple[int, int, int, int, int]
# The most interviews one request may choose, for the API and the page alike.
MAX_INTERVIEWS = 50

# (m, n1) -> units: m coders saw each of these units and n1 of them coded it.
Patterns = Counter
# (first coder coded it, second coder coded it) -> units both saw (kappa's 2x2 table).
Table = Counter


def merged(spans: Iterable[tuple[int, int]], length: int) -> list[tuple[int, int]]:
    """One coder's [start, end) spans on one transcript, cut at its end (a transcript edited
    since), empty ones dropped and overlapping or touching ones joined, in order."""
    result: list[list[int]] = []
    for start, end in sorted((max(0, s), min(e, length)) for s, e in spans):
        if start >= end:
            continue
        if result and start <= result[-1][1]:
            result[-1][1] = max(result[-1][1], end)
        else:
            result.append([start, end])
    return [(start, end) for start, end in result]


def segments(by_coder: dict[int, list[tuple[int, int]]]) -> Iterable[tuple[frozenset, int]]:
    """(coders coding it, length) for each stretch between consecutive span boundaries where
    at least one coder codes; `by_coder` holds each coder's merged spans."""
    events = sorted(
        (position, coder, delta)
        for coder, spans in by_coder.items()
        for start, end in spans
        for position, delta in ((start, 1), (end, -1))
    )
    active: set[int] = set()
    previous = None
    for position, coder, delta in events:
        if active and previous is not None and position > previous:
            yield frozenset(active), position - previous
        if delta == 1:
            active.add(coder)
        else:
            active.discard(coder)
        previous = position


def alpha_nominal(patterns: Patterns) -> float | None:
    """Krippendorff's alpha (nominal, values 0/1) from unit patterns; None when undefined.

    Coincidences: each unit seen by m >= 2 coders, n1 of whom coded it (n0 = m - n1), adds
    n1(n1-1)/(m-1) to o_11, n0(n0-1)/(m-1) to o_00 and n0*n1/(m-1) to o_01; then
    alpha = 1 - (n - 1) * o_01 / (n_0 * n_1) with n_1 = o_11 + o_01, n_0 = o_00 + o_01.
    """
    o_00 = o_01 = o_11 = Fraction(0)
    for (m, n1), units in patterns.items():
        if m < 2 or units == 0:
            continue
        n0 = m - n1
        o_11 += Fraction(units * n1 * (n1 - 1), m - 1)
        o_00 += Fraction(units * n0 * (n0 - 1), m - 1)
        o_01 += Fraction(units * n0 * n1, m - 1)
    n_1, n_0 = o_11 + o_01, o_00 + o_01
    n = n_0 + n_1
    if n_0 * n_1 == 0 or n <= 1:
        return None
    return float(1 - (n - 1) * o_01 / (n_0 * n_1))


def kappa(table: Table) -> float | None:
    """Cohen's kappa from the 2x2 table of units both coders saw; None when undefined."""
    total = sum(table.values())
    if total == 0:
        return None
    first = Fraction(table[True, True] + table[True, False], total)  # share coded by first
    second = Fraction(table[True, True] + table[False, True], total)
    p_o = Fraction(table[True, True] + table[False, False], total)
    p_e = first * second + (1 - first) * (1 - second)
    if p_e == 1:
        return None
    return float((p_o - p_e) / (1 - p_e))


def agreement(lengths: dict[int, int], spans: Iterable[Span]) -> dict:
    """Agreement per theme and overall.

    In: `lengths`, interview id -> transcript length in characters (the chosen interviews);
    `spans`, (coder, theme, interview, start, end) codings. The coders are those with at
    least one span in these interviews; spans on other interviews are ignored. A coder is
    present on an interview only where they have a span there (any theme).
    Out: {"coders": [coder ids, ascending], "characters": units per theme,
          "themes": {theme id: {"alpha", "kappa", "coded": {coder id: characters}}},
          "overall": {"alpha", "kappa", "coded": {coder id: (theme, character) pairs}}}
    with alpha/kappa None where undefined (kappa always None unless exactly two coders).
    """
    grouped: dict[tuple[int, int], dict[int, list]] = defaultdict(lambda: defaultdict(list))
    present: dict[int, set[int]] = defaultdict(set)  # interview -> coders with a span there
    for coder, theme, interview, start, end in spans:
        if interview in lengths:
            grouped[interview, theme][coder].append((start, end))
            present[interview].add(coder)
    coders = sorted(set().union(*present.values()))
    pair = tuple(coders) if len(coders) == 2 else None
    # Before any coding, every character of an interview is a unit nobody coded, seen by the
    # coders present there: the same for every theme.
    uncoded_patterns, uncoded_table = Patterns(), Table()
    for interview, length in lengths.items():
        uncoded_patterns[len(present[interview]), 0] += length
        if pair and present[interview] == set(pair):
            uncoded_table[False, False] += length
    themes_of: dict[int, list[int]] = defaultdict(list)
    for interview, theme in grouped:
        themes_of[theme].append(interview)
    themes = {}
    for theme, interviews in sorted(themes_of.items()):
        patterns, table = Patterns(uncoded_patterns), Table(uncoded_table)
        coded = dict.fromkeys(coders, 0)
        for interview in interviews:
            length, seen = lengths[interview], present[interview]
            by_coder = {
                coder: merged(ranges, length) for coder, ranges in grouped[interview, theme].items()
            }
            for coder, ranges in by_coder.items():
                coded[coder] += sum(end - start for start, end in ranges)
            for coding, units in segments(by_coder):
                patterns[len(seen), 0] -= units  # these units move out of "nobody coded"
                patterns[len(seen), len(coding)] += units
                if pair and seen == set(pair):
                    table[False, False] -= units
                    table[pair[0] in coding, pair[1] in coding] += units
        themes[theme] = {"patterns": patterns, "table": table, "coded": coded}
    overall = {"patterns": Patterns(), "table": Table(), "coded": dict.fromkeys(coders, 0)}
    for counts in themes.values():
        overall["patterns"].update(counts["patterns"])
        overall["table"].update(counts["table"])
        for coder, count in counts["coded"].items():
            overall["coded"][coder] += count
    return {
        "coders": coders,
        "characters": sum(lengths.values()),
        "themes": {theme: _summary(counts, pair) for theme, counts in themes.items()},
        "overall": _summary(overall, pair),
    }


def _summary(counts: dict, pair: tuple | None) -> dict:
    return {
        "alpha": alpha_nominal(counts["patterns"]),
        "kappa": kappa(counts["table"]) if pair else None,
        "coded": counts["coded"],
    }


# --- disagreements and the consensus version (coding rounds) -------------------------------

KEEP, DROP, CODER_PREFIX = "keep", "drop", "coder:"


def passages(by_coder: dict[int, list[tuple[int, int]]]) -> list[dict]:
    """The passages of one (interview, theme): maximal stretches that some coder coded, with
    each coder's merged spans inside them, for the coders compared side by side.

    In: coder id -> that coder's merged [start, end) spans (`merged`), every compared coder
    present (an empty list: coded none of it). Out, in order: {"start", "end", "agreed",
    "spans": {coder: [(start, end)]}}, `agreed` when every coder coded exactly the passage.
    """
    bounds = sorted(span for spans in by_coder.values() for span in spans)
    stretches: list[list[int]] = []
    for start, end in bounds:
        if stretches and start <= stretches[-1][1]:
            stretches[-1][1] = max(stretches[-1][1], end)
        else:
            stretches.append([start, end])
    result = []
    for start, end in stretches:
        inside = {
            coder: [(s, e) for s, e in spans if s < end and e > start]
            for coder, spans in by_coder.items()
        }
        agreed = all(spans == [(start, end)] for spans in inside.values())
        result.append({"start": start, "end": end, "agreed": agreed, "spans": inside})
    return result


def decision_choices(coders: Iterable[int]) -> list[str]:
    """What may be decided for a disagreement: one coder's version, keep all of it, drop it."""
    return [f"{CODER_PREFIX}{coder}" for coder in coders] + [KEEP, DROP]


def consensus_spans(passage: dict, decision: str | None) -> list[tuple[int, int]]:
    """The consensus spans of one passage: agreed passages as they are; otherwise the chosen
    coder's spans, the whole passage (`keep`) or nothing (`drop`). `decision` must be one of
    decision_choices (ValueError otherwise)."""
    if passage["agreed"]:
        return [(passage["start"], passage["end"])]
    if decision == KEEP:
        return [(passage["start"], passage["end"])]
    if decision == DROP:
        return []
    if decision and decision.startswith(CODER_PREFIX):
        coder = decision.removeprefix(CODER_PREFIX)
        if coder.isdigit() and int(coder) in passage["spans"]:
            return list(passage["spans"][int(coder)])
    raise ValueError(f"Not a decision for this passage: {decision!r}")
