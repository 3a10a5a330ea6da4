"""Compiled CPU kernels that fold one batch of a transformer's attention patterns or MLP
outputs into the profile's running sums in one pass (numba, compiled on first use).

Taken as a chain of torch operations, each statistic is its own pass over the batch, and those
passes, not the arithmetic, made profiling cost 1.4x a bare forward pass on the benchmark's
model (analysis.engine.benchmarks.bench_transformer_profile_vs_forward). Here each value is
read once, while it is in the cache, and every statistic is updated from it. head_profiles
uses these kernels for float32 tensors on the CPU and its torch path everywhere else (a GPU,
other dtypes); tests/analysis/test_engine_profile_kernels.py holds the two paths to each other
and to float64 sums.

Speed: the compiler (LLVM) vectorises an inner loop only where it has no branch and its arrays
can be told apart at run time; a loop that failed either ran 3-4x slower here. Hence the
branch-free entropy loop, the token sums in a loop of their own, and two distinct token rows
per pair of rows (see the comments in the kernels).

Precision: values are summed in float32 over at most CHUNK_ROWS rows (an attention pattern's
row sums over its keys) and then added to float64 sums, so no float32 sum runs long.

Compiling both kernels took ~15 s on this 2-core machine under load; numba caches the machine
code in NUMBA_CACHE_DIR, else in the __pycache__ beside this file, else in the user's cache
directory, and a process then loads it in about a second. Where none is writable (a read-only
install whose user has no home) each process compiles its own, with a warning: the worker
unit in deploy/systemd gives numba a cache directory.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from numba import njit

logger = logging.getLogger(__name__)

# Rows summed in float32 before they are added to the float64 sums. Measured on the
# benchmark's MLP outputs against float64 sums: 64 rows keep the relative error of sums of
# squares under 1e-6 (512 rows: 5e-6) and cost no measurable time more.
CHUNK_ROWS = 64
# Design rows (ones, then attributes) summed in fold_neuron_rows' main loop; more are taken in
# a loop each. The tasks here have at most three attributes.
FUSED_TERMS = 4

# Reassociation lets the compiler vectorise the sums; no other fast-math licence is taken, so
# NaN and infinity behave as IEEE says.
_FAST = {"reassoc", "contract"}


def compiled(**options):
    """numba's njit (nogil) with the machine code cached on disk when a cache directory is
    writable, else compiled in each process (numba refuses cache=True without one)."""

    def decorate(function):
        try:
            return njit(cache=True, nogil=True, **options)(function)
        except RuntimeError as error:  # "cannot cache function ...: no locator available"
            logger.warning("%s: compiling it in each process (set NUMBA_CACHE_DIR)", error)
            return njit(nogil=True, **options)(function)

    return decorate


@compiled(fastmath=_FAST)
def fold_neuron_rows(output, shift, design, tokens, design_sums, token_sums, squares, positive,
                     maximum):  # fmt: skip
    """Add a batch of neuron outputs to the running sums.

    In: output float32 [R, M] (one row per sequence position); shift float32 [M] (the sums are
    of output - shift); design float32 [D, R] (a row of ones, then attributes); tokens int64
    [R] (each row's class; empty: no classes). Adds to the float64 sums: design_sums [D, M]
    (design @ centred rows), token_sums [V, M] (centred rows summed per token), squares [M],
    positive [M] (outputs > 0); maximum [M] takes the running maximum. A NaN output is left
    out of positive and maximum (its squares are NaN: the caller marks such neurons).

    Rows are taken two at a time in one loop over the neurons that updates every sum but the
    token sums (the first FUSED_TERMS design rows with it), and a second loop over the same
    two rows, still in the cache, for the token sums. The new maximum is never just the old
    one, which compiles to plain stores (a conditional store was ~8x slower on this
    machine's CPU). Measured ~2x cheaper than a loop per statistic.
    """
    rows, width = output.shape
    n_design = design.shape[0]
    n_tokens = token_sums.shape[0] if tokens.shape[0] > 0 else 0
    if n_tokens and (tokens.min() < 0 or tokens.max() >= n_tokens):
        raise ValueError("a token is outside token_sums' rows")
    one, zero = np.float32(1.0), np.float32(0.0)
    weights = np.zeros((FUSED_TERMS, rows), np.float32)  # missing design rows weigh 0
    weights[: min(n_design, FUSED_TERMS)] = design[:FUSED_TERMS]
    count, square = np.empty(width, np.float32), np.empty(width, np.float32)
    linear = np.empty((max(n_design, FUSED_TERMS), width), np.float32)
    linear0, linear1, linear2, linear3 = linear[0], linear[1], linear[2], linear[3]
    first = np.empty(width, np.float32)  # a lone row, centred
    # float32 sums per token of up to CHUNK_ROWS rows, and two spare rows (see below)
    token_partial = np.zeros((n_tokens + 2, width), np.float32)
    spare = token_partial[n_tokens + 1]
    pending = np.zeros(n_tokens + 2, np.int64)  # rows in each token's partial sums
    largest = np.full(width, -np.inf, np.float32)
    for start in range(0, rows, CHUNK_ROWS):
        stop = min(rows, start + CHUNK_ROWS)
        count[:] = 0.0
        square[:] = 0.0
        linear[:] = 0.0
        for row in range(start, stop - 1, 2):
            values, more = output[row], output[row + 1]
            w0, w1, w2, w3 = weights[0, row], weights[1, row], weights[2, row], weights[3, row]
            v0, v1 = weights[0, row + 1], weights[1, row + 1]
            v2, v3 = weights[2, row + 1], weights[3, row + 1]
            # The two rows' tokens' partial sums, always two different rows: the compiler
            # vectorises the loop below only where they do not overlap (it was ~4x slower
            # when they did). The second of two equal tokens goes to the spare row first, and
            # rows without a class go to the spare rows, which are never read.
            here = tokens[row] if n_tokens else n_tokens
            there = tokens[row + 1] if n_tokens else n_tokens + 1
            to_here = token_partial[here]
            to_there = spare if here == there else token_partial[there]
            for unit in range(width):
                x, y = values[unit], more[unit]
                a, b = x - shift[unit], y - shift[unit]
                count[unit] += (one if x > 0 else zero) + (one if y > 0 else zero)
                square[unit] += a * a + b * b
                top = largest[unit]
                top = x if x > top else top
                largest[unit] = y if y > top else top
                linear0[unit] += w0 * a + v0 * b
                linear1[unit] += w1 * a + v1 * b
                linear2[unit] += w2 * a + v2 * b
                linear3[unit] += w3 * a + v3 * b
            # the token sums in a loop of their own: with fewer arrays to tell apart, the
            # compiler's overlap checks per row cost less (measured ~20% off this kernel)
            for unit in range(width):
                centre = shift[unit]
                to_here[unit] += values[unit] - centre
                to_there[unit] += more[unit] - centre
            if here == there:  # the same order of additions as one row taking both
                for unit in range(width):
                    to_here[unit] += spare[unit]
                    spare[unit] = 0.0
            for term in range(FUSED_TERMS, n_design):
                w, v = design[term, row], design[term, row + 1]
                sums = linear[term]
                for unit in range(width):
                    centre = shift[unit]
                    sums[unit] += w * (values[unit] - centre) + v * (more[unit] - centre)
            # written out here: a call (even inlined) made the loop above ~1.5x slower
            for token in (here, there):
                pending[token] += 1
                if pending[token] == CHUNK_ROWS and token < n_tokens:
                    _flush_token(token, token_partial, pending, token_sums)
        if (stop - start) % 2:  # the chunk's last row, alone
            row = stop - 1
            values = output[row]
            for unit in range(width):
                x = values[unit]
                a = x - shift[unit]
                first[unit] = a
                count[unit] += one if x > 0 else zero
                square[unit] += a * a
                if x > largest[unit]:
                    largest[unit] = x
            for term in range(n_design):
                w = design[term, row]
                sums = linear[term]
                for unit in range(width):
                    sums[unit] += w * first[unit]
            if n_tokens:
                lone = token_partial[tokens[row]]
                for unit in range(width):
                    lone[unit] += first[unit]
                pending[tokens[row]] += 1
                if pending[tokens[row]] == CHUNK_ROWS:
                    _flush_token(tokens[row], token_partial, pending, token_sums)
        for unit in range(width):
            positive[unit] += count[unit]
            squares[unit] += square[unit]
        for term in range(n_design):
            for unit in range(width):
                design_sums[term, unit] += linear[term, unit]
    for unit in range(width):
        if largest[unit] > maximum[unit]:
            maximum[unit] = largest[unit]
    for token in range(n_tokens):
        if pending[token]:
            _flush_token(token, token_partial, pending, token_sums)


@compiled(fastmath=_FAST)
def _flush_token(token, partial, pending, token_sums):
    """Move a token's float32 partial sums (up to CHUNK_ROWS rows) into its float64 sums."""
    total, row = token_sums[token], partial[token]
    for unit in range(row.shape[0]):
        total[unit] += row[unit]
        row[unit] = 0.0
    pending[token] = 0


@compiled(inline="always")
def _total(values):
    """Out: the float64 sum of float32 values."""
    total = 0.0
    for value in values:
        total += value
    return total


@compiled(fastmath=_FAST)
def fold_head_rows(pattern, scores, tokens, n_vocab, sums, counts):
    """Add a batch of one attention layer's patterns to the per-head score sums.

    In: pattern float32 [B, H, P, P] (softmax of scores over keys); scores float32 [B, H, P, P]
    (masked keys -inf); tokens int64 [B, P] below n_vocab. Adds to sums float64 [4, H] (rows:
    previous-token, induction, duplicate-token, entropy, as head_profiles.HEAD_SCORES) and
    counts float64 [4] (the queries each score is defined for).

    A query's duplicate keys are the earlier positions holding its token (a chain through
    each position's previous occurrence: no [P, P] comparison), and its induction keys the
    positions just after those, before the query. The entropy needs no logarithm per key:
    with j a key whose attention is not small (the first with p_j >= 1 / (2P); the largest
    is >= 1 / P), log p_k = (s_k - s_j) + log p_j, so entropy = -sum_k p_k ((s_k - s_j) +
    log p_j). The products are summed per key across up to CHUNK_ROWS queries (no reduction
    per query); masked keys (p = 0) add 0. A NaN row makes its head's entropy NaN.
    """
    batch, heads, positions, _ = pattern.shape
    if tokens.size and (tokens.min() < 0 or tokens.max() >= n_vocab):
        raise ValueError("a token is outside the vocabulary")
    least = np.float32(0.5 / positions)
    floor = np.float32(-1e4)  # below any key with p > 0: s_k - s_j >= log(1e-45) > -104
    latest = np.full(n_vocab, -1, np.int64)  # reset after each sequence: O(P), not O(V)
    earlier = np.empty(positions, np.int64)  # the previous position with the same token, or -1
    dots = np.empty(positions, np.float32)
    for b in range(batch):
        sequence = tokens[b]
        for query in range(positions):
            earlier[query] = latest[sequence[query]]
            latest[sequence[query]] = query
            key = earlier[query]
            if key >= 0:
                counts[2] += 1.0
                if key + 1 < query or earlier[key] >= 0:  # an induction key lies before it
                    counts[1] += 1.0
        for query in range(positions):
            latest[sequence[query]] = -1
        counts[0] += max(positions - 1, 0)
        counts[3] += positions
        for head in range(heads):
            previous, induction, duplicate, entropy = 0.0, 0.0, 0.0, 0.0
            undefined = False  # a row without a reference key: a NaN row
            dots[:] = 0.0
            for query in range(positions):
                if query % CHUNK_ROWS == 0 and query:
                    entropy -= _total(dots)
                    dots[:] = 0.0
                attention, logits = pattern[b, head, query], scores[b, head, query]
                # a reference key whose attention is not small (the largest is >= 1 / P)
                reference = -1
                for key in range(positions):
                    if attention[key] >= least:
                        reference = key
                        break
                # No branch around the sum: one made this kernel ~3x slower (not vectorised).
                # A NaN row has no reference (and p > 0 below would leave its NaN out).
                undefined |= reference < 0
                reference = max(reference, 0)
                top = logits[reference]
                log_top = np.float32(math.log(attention[reference]))
                # a fixed length and no branch vectorise; a masked key's -inf becomes a finite
                # floor (below any key whose p > 0), so that p = 0 adds 0, not NaN
                for key in range(positions):
                    dots[key] += attention[key] * (max(logits[key] - top, floor) + log_top)
                if query > 0:
                    previous += attention[query - 1]
                key = earlier[query]
                while key >= 0:
                    duplicate += attention[key]
                    if key + 1 < query:
                        induction += attention[key + 1]
                    key = earlier[key]
            sums[0, head] += previous
            sums[1, head] += induction
            sums[2, head] += duplicate
            sums[3, head] += np.nan if undefined else entropy - _total(dots)
