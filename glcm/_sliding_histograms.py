"""Sliding histograms: count features of every window (asm, entropies, imc) from
histograms of the window's keys that are updated as the window moves along a row."""

from __future__ import annotations

import functools
import math

import numpy as np
from keras import ops

from glcm._box_sums import anchor_kernels
from glcm.features import BY_NAME, SLIDING_HISTOGRAMS, names_by


# Σ m ln m is kept as an int32 fixed-point sum of a table: the running sum of table
# differences telescopes, so it is exact and does not depend on the path the window
# took (a block that starts elsewhere gives bit-identical results).
INT32_LIMIT = (1 << 31) - 1


def m_log_m_table(most):
    """(scale_bits, F): F[m] = round(m ln m 2^scale_bits) for m = 0..most, int64.

    ``scale_bits`` is the largest that keeps Σ F[m_k] over any histogram of at most
    ``most`` elements within int32: m ln m is convex with 0 at 0 and 1, so that sum is
    at most most·ln(most) 2^scale_bits plus half a unit per key.
    """
    most = max(int(most), 2)
    m = np.arange(most + 1, dtype=np.float64)
    f = m * np.log(np.maximum(m, 1.0))
    bits = int(math.floor(math.log2((INT32_LIMIT - most) / f[-1])))
    return bits, np.rint(f * 2.0 ** bits).astype(np.int64)


class SlidingCounts:
    """Σ m² and Σ m ln m of every window's key histograms.

    For each output row and offset, histograms of the window's keys (joint pair
    codes, i + j, |i - j|, grey levels) live in one int16 table. Moving one column
    right removes the anchors of the column that leaves and adds those of the column
    that enters, one element at a time (repeated keys need no special care): adding
    to a key of count m changes Σ m² by 2m + 1 and Σ m ln m by F[m+1] - F[m], a
    table look-up (:func:`m_log_m_table`). Both sums are int32 and exact: no
    logarithm and no rounding in the loop. Two backend ``fori_loop`` calls run over
    the columns and, in each, over the window's rows, vectorized over output rows,
    offsets and key kinds: O(window) per pixel, independent of the number of
    levels. The table holds rows x offsets x (levels² + 5 levels) counts;
    texture_map sizes its row chunks for it.

    The constructor lays out the histograms; the window sums are computed when first
    asked for (:attr:`sums`, :meth:`features`).

    Args:
      pairs: the window pairs (:class:`glcm._inputs.WindowPairs`).
      names: the count features asked for (a subset of FEATURES).
    """

    FEATURES = names_by(lambda f: f.mechanism == SLIDING_HISTOGRAMS)

    @classmethod
    def elements_per_row(cls, names, batch, width, window, levels, n_offsets):
        """Values this mechanism holds per output row: one histogram table of about
        levels² + 5 levels counts per offset."""
        return batch * n_offsets * (levels * levels + 5 * levels)

    def __init__(self, pairs, names):
        self.window, self.offsets = pairs.window, pairs.offsets
        L, symmetric, window = pairs.levels, pairs.symmetric, pairs.window
        self.symmetric = symmetric
        i = ops.maximum(pairs.reference, 0) + ops.zeros_like(pairs.neighbour)
        j = ops.maximum(pairs.neighbour, 0)  # both (B, rh, rw, K)
        lo, hi = ops.minimum(i, j), ops.maximum(i, j)
        # the key histograms the features need (the registry says which); p_y comes
        # with p_x
        wanted = {h for name in names for h in BY_NAME[name].histograms}
        if "x" in wanted:
            wanted.add("y")
        ones = ops.ones_like(i)
        # asm of a symmetric GLCM: an off-diagonal key is split over two cells, so it
        # weighs half a diagonal one (weights 1 and 2 here, halved at the end).
        self.square_divisor = 2.0 if symmetric else 1.0
        joint_weight = ops.where(ops.equal(lo, hi), 2, 1) if symmetric else ones
        candidates = [("joint", lo * L + hi if symmetric else i * L + j, L * L, joint_weight),
                      ("sum", i + j, 2 * L - 1, ones), ("diff", hi - lo, L, ones),
                      ("x", i, L, ones), ("y", j, L, ones)]
        self.stats = [c[0] for c in candidates if c[0] in wanted]
        phases = ([], [])  # (stat slot, keys, square weight) per stream
        bases = {}
        base = 0
        for name, keys, size, weight in candidates:
            if name not in wanted:
                continue
            if name == "y" and symmetric:
                # p_x = p_y: j joins i's histogram, in a second phase so that one
                # update never touches the same cell twice.
                phases[1].append((self.stats.index("x"), keys + bases["x"], weight))
                continue
            bases[name] = base
            phases[0].append((self.stats.index(name), keys + base, weight))
            base += size
        self.table_size = base
        self.phases = [p for p in phases if p]
        # The largest histogram: every anchor of a window (twice for symmetric p_x).
        self.most = window * window * (2 if symmetric and "x" in wanted else 1)
        self.scale_bits, self.m_log_m = m_log_m_table(self.most)
        self.valid = ops.cast(pairs.valid, "int32")

    @functools.cached_property
    def sums(self):
        """{histogram: (Σ m², Σ m ln m in fixed point)} of every window, int32."""
        return self._run()

    def _aligned_columns(self, maps, x, back):
        """Column ``x - back[k]`` of offset k's map, 0 outside: (B, rh, K, ...)."""
        rw, k = maps.shape[2], len(self.offsets)
        col = x - ops.convert_to_tensor(back.astype("int32"))
        inside = ops.logical_and(col >= 0, col < rw)
        flat = ops.reshape(maps, (-1, maps.shape[1], rw * k) + tuple(maps.shape[4:]))
        index = ops.where(inside, col, 0) * k + ops.arange(k, dtype="int32")
        taken = ops.take(flat, index, axis=2)
        inside = ops.reshape(inside, (1, 1, k) + (1,) * (len(maps.shape) - 4))
        return ops.where(inside, taken, ops.zeros_like(taken))

    def _run(self):
        window, K = self.window, len(self.offsets)
        rows_k, cols_k = anchor_kernels(window, self.offsets)
        hi_col = np.array([np.nonzero(cols_k[:, k])[0].max() for k in range(K)])
        width = cols_k.sum(axis=0).astype(np.int64)
        # Shift offset k's columns so every offset's window ends at step x.
        shift = (window - 1) - hi_col
        batch, rh, rw = self.valid.shape[0], self.valid.shape[1], self.valid.shape[2]
        if batch is None:  # traced with an unknown batch (e.g. inside Keras' fit)
            batch = ops.shape(self.valid)[0]
        out_h = rh - window + 1
        n_stats = len(self.stats)
        vector = (batch, out_h, K)
        row_base = ops.reshape(ops.arange(batch * out_h * K, dtype="int32"),
                               vector)[..., None] * self.table_size
        # F[m+1] - F[m] for m = 0..most-1: what adding to a key of count m adds.
        step = ops.convert_to_tensor(np.diff(self.m_log_m).astype(np.int32))
        phases = []
        for streams in self.phases:
            keys = ops.stack([s[1] for s in streams], axis=-1)  # (B, rh, rw, K, S)
            w = ops.stack([self.valid] * len(streams), axis=-1)
            weight = ops.stack([s[2] for s in streams], axis=-1)
            phases.append(([s[0] for s in streams], keys, w, weight))
        # (window, K, 1): which offsets have an anchor in each window row
        row_mask = ops.convert_to_tensor(rows_k[:, :, None].astype(np.int32))

        def update(table, sq, ml, keys, w, weight, slots, sign):
            idx = ops.reshape(row_base + keys, (-1,))
            m = ops.cast(ops.reshape(ops.take(table, idx), (-1,) + tuple(keys.shape[1:])),
                         "int32")
            if sign > 0:  # count m -> m + 1
                d_sq, d_ml = 2 * m + 1, ops.take(step, ops.minimum(m, self.most - 1))
            else:  # m -> m - 1 (w = 0 where nothing is removed)
                before = ops.maximum(m - 1, 0)
                d_sq, d_ml = -(2 * before + 1), -ops.take(step, before)
            table = ops.scatter_update(table, idx[:, None],
                                       ops.cast(ops.reshape(m + sign * w, (-1,)), "int16"))
            d_sq, d_ml = d_sq * w * weight, d_ml * w
            for s, slot in enumerate(slots):
                sq[slot] = sq[slot] + d_sq[..., s]
                ml[slot] = ml[slot] + d_ml[..., s]
            return table

        def rows_of(column, t):
            """Window row t's anchors of a column, for every output row."""
            first = column.shape[0] if column.shape[0] is not None else -1
            return ops.slice(column, (0, t) + (0,) * (len(column.shape) - 2),
                             (first, out_h) + tuple(column.shape[2:]))

        def body(x, state):
            table, sq, ml, out = state
            # Each phase's keys, validity and weights in the column leaving the window
            # (sign -1) and the one entering it (+1).
            columns = [(slots, sign, [self._aligned_columns(a, x, back)
                                      for a in (keys, w, weight)])
                       for slots, keys, w, weight in phases
                       for sign, back in ((-1, shift + width), (1, shift))]

            # Window rows in a loop, not unrolled: compile time stays flat in the
            # window (unrolled, it grew with the window).
            # Row t's leaving anchors go before its entering ones, so no count
            # exceeds a full window; the sums do not depend on the order.
            def row(t, inner):
                table, sq, ml = inner[0], list(inner[1]), list(inner[2])
                mask = ops.take(row_mask, t, axis=0)
                for slots, sign, (keys_x, w_x, weight_x) in columns:
                    table = update(table, sq, ml, rows_of(keys_x, t),
                                   rows_of(w_x, t) * mask, rows_of(weight_x, t), slots,
                                   sign)
                return table, sq, ml

            table, sq, ml = ops.fori_loop(0, window, row, (table, list(sq), list(ml)))
            values = ops.stack(list(sq) + list(ml), axis=-1)[None]
            out = ops.slice_update(out, (x, 0, 0, 0, 0), values)
            return table, sq, ml, out

        zeros = ops.zeros(vector, "int32")
        # int16 counts (at most 2 x 63² = 7938): half the memory traffic of int32
        state = (ops.zeros((batch * out_h * K * self.table_size,), "int16"),
                 [zeros] * n_stats, [zeros] * n_stats,
                 ops.zeros((rw,) + vector + (2 * n_stats,), "int32"))
        out = ops.fori_loop(0, rw, body, state)[-1]
        out = ops.moveaxis(out[window - 1:], 0, 2)  # (B, out_h, out_w, K, 2 S)
        return {name: (out[..., s], out[..., n_stats + s])
                for s, name in enumerate(self.stats)}

    def entropy_of(self, stat, total):
        """ln(total) - Σ m ln m / total; exactly 0 where one key holds every element
        (the fixed-point Σ m ln m equals F[total] then, and only then: any split of
        the elements lowers m ln m by more than one, far more than the rounding of F).
        """
        m_log_m = self.sums[stat][1]
        count = ops.clip(ops.cast(total, "int32"), 0, self.most)  # counts are exact
        single = ops.equal(m_log_m, ops.take(ops.convert_to_tensor(
            self.m_log_m.astype(np.int32)), count))
        scale = 2.0 ** -self.scale_bits
        h = ops.maximum(ops.log(total) - ops.cast(m_log_m, "float32") * scale / total, 0.0)
        return ops.where(single, 0.0, h)

    def features(self, box, names):
        """The count features ``names`` (a dict), with the pair count and the
        off-diagonal fraction from the window's :class:`BoxMoments` ``box``."""
        n, symmetric = box.n_safe, self.symmetric
        out = {}
        if "joint" in self.stats:
            h_joint = self.entropy_of("joint", n)
            if symmetric:
                # an unordered off-diagonal pair splits over two cells: + ln 2 each
                h_joint = h_joint + math.log(2.0) * box.off_diagonal_fraction()
            asm = ops.cast(self.sums["joint"][0], "float32") / (self.square_divisor * n * n)
            out.update(entropy=h_joint, asm=asm, energy=ops.sqrt(asm))
        if "sum" in self.stats:
            out["sum_entropy"] = self.entropy_of("sum", n)
        if "diff" in self.stats:
            out["difference_entropy"] = self.entropy_of("diff", n)
        if "x" in self.stats:
            if symmetric:
                hx = hy = self.entropy_of("x", 2.0 * n)
            else:
                hx, hy = self.entropy_of("x", n), self.entropy_of("y", n)
            mutual = ops.maximum(hx + hy - out["entropy"], 0.0)
            hmax = ops.maximum(hx, hy)
            # below float32 resolution of the entropies a window counts as one level
            positive = hmax > 1e-6
            out["imc1"] = ops.where(positive, -mutual / ops.where(positive, hmax, 1.0), 0.0)
            out["imc2"] = ops.sqrt(ops.maximum(-ops.expm1(-2.0 * mutual), 0.0))
        return {name: out[name] for name in names}
