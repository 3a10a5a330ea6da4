"""Agreement between coders, on the character positions of interview transcripts, as
qualitative tools compute it (pure: numpy, krippendorff and scikit-learn; no Django, no torch).

For each theme and each coder, every character of the chosen transcripts (concatenated) is
coded (1) or not (0). Krippendorff's alpha (nominal) is taken over all coders, Cohen's kappa
when there are exactly two. "Overall" is the same over every theme at once: each (theme,
character) pair is a unit. A value the data leave undefined (one coder, no characters, no
variation) is None, never 0.
"""

import math
import warnings
from collections import defaultdict
from collections.abc import Iterable

import krippendorff
import numpy as np
from sklearn.metrics import cohen_kappa_score

# (coder id, theme id, interview id, start, end): characters [start, end) of the interview's
# transcript coded with the theme by the coder.
Span = tuple[int, int, int, int, int]
# Each theme holds a (coders, characters) matrix in memory: the most interviews one request
# may choose, for the API and the page alike.
MAX_INTERVIEWS = 50


def coded_matrix(
    coders: list[int], ranges: dict[int, tuple[int, int]], total: int, spans: Iterable[Span]
) -> np.ndarray:
    """One theme's codings as a (coders, total) 0/1 matrix; `ranges` places each interview's
    transcript in the concatenation as [first, last). Overlapping spans of one coder code a
    character once; a span running past its transcript's end (edited since) is cut there."""
    row_of = {coder: row for row, coder in enumerate(coders)}
    matrix = np.zeros((len(coders), total), dtype=np.int8)  # (coders, units)
    for coder, _theme, interview, start, end in spans:
        low, high = ranges[interview]
        matrix[row_of[coder], min(low + start, high) : min(low + end, high)] = 1
    return matrix


def alpha_nominal(matrix: np.ndarray) -> float | None:
    """Krippendorff's alpha (nominal) of a (coders, units) 0/1 matrix; None when undefined."""
    if matrix.shape[0] < 2 or matrix.shape[1] == 0:
        return None
    ones = matrix.sum(axis=0, dtype=np.int64)  # (units,) coders who coded each unit
    # Counts per unit and value; the package's own conversion would build (coders, units,
    # values) booleans, which costs far more memory on long transcripts.
    value_counts = np.stack([matrix.shape[0] - ones, ones], axis=1)  # (units, 2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # no variation: 0/0, which comes back as nan
            value = krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal")
    except ValueError:  # a single value in the whole domain: no variation to agree on
        return None
    return _defined(value)


def kappa(matrix: np.ndarray) -> float | None:
    """Cohen's kappa of a (2, units) 0/1 matrix; None when undefined or not two coders."""
    if matrix.shape[0] != 2 or matrix.shape[1] == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns, then answers nan, on no variation
        value = cohen_kappa_score(matrix[0], matrix[1], labels=[0, 1])
    return _defined(value)


def _defined(value) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def agreement(lengths: dict[int, int], spans: Iterable[Span]) -> dict:
    """Agreement per theme and overall.

    In: `lengths`, interview id -> transcript length in characters (the chosen interviews);
    `spans`, (coder, theme, interview, start, end) codings. The coders are those with at
    least one span in these interviews; spans on other interviews are ignored.
    Out: {"coders": [coder ids, ascending], "characters": units per theme,
          "themes": {theme id: {"alpha", "kappa", "coded": {coder id: characters}}},
          "overall": {"alpha", "kappa", "coded": {coder id: (theme, character) pairs}}}
    with alpha/kappa None where undefined (kappa always None unless exactly two coders).
    """
    ranges: dict[int, tuple[int, int]] = {}
    total = 0
    for interview, length in sorted(lengths.items()):
        ranges[interview] = (total, total + length)
        total += length
    by_theme: dict[int, list[Span]] = defaultdict(list)
    for span in spans:
        if span[2] in lengths:
            by_theme[span[1]].append(span)
    coders = sorted({span[0] for theme_spans in by_theme.values() for span in theme_spans})
    themes, matrices = {}, []
    for theme, theme_spans in sorted(by_theme.items()):
        matrix = coded_matrix(coders, ranges, total, theme_spans)
        matrices.append(matrix)
        themes[theme] = _summary(coders, matrix)
    overall = np.concatenate(matrices, axis=1) if matrices else np.zeros((len(coders), 0))
    return {
        "coders": coders,
        "characters": total,
        "themes": themes,
        "overall": _summary(coders, overall),
    }


def _summary(coders: list[int], matrix: np.ndarray) -> dict:
    coded = matrix.sum(axis=1, dtype=np.int64)  # (coders,)
    return {
        "alpha": alpha_nominal(matrix),
        "kappa": kappa(matrix),
        "coded": {coder: int(count) for coder, count in zip(coders, coded, strict=True)},
    }
