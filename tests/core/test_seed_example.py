"""The seed article's worked example, done right, and why its formulas are wrong.

The example: x = [0, 128, 255], 8 bits, range [a, b] = [0, 255]. Correct
affine quantization gives codes [0, 128, 255] and reconstructs x exactly:

    Δ = (hi - lo) / (2^n - 1) = 255 / 255 = 1
    q = clip(round((x - lo) / Δ), 0, 2^n - 1) = [0, 128, 255]
    x̂ = lo + Δ·q = [0, 128, 255]
"""

from __future__ import annotations

import numpy as np

from bitlens.core.formats import dequantize, quantize

X = np.array([0.0, 128.0, 255.0])
BITS = 8
LO, HI = 0.0, 255.0


def affine_reference(
    x: np.ndarray, bits: int, lo: float, hi: float
) -> tuple[np.ndarray, np.ndarray]:
    """Float64 affine quantize/dequantize: Δ = (hi - lo)/(2^n - 1), x̂ = lo + Δ·q."""
    levels = 2**bits - 1
    delta = (hi - lo) / levels
    q = np.clip(np.rint((x - lo) / delta), 0, levels)
    return q, lo + delta * q


def test_reference_reconstructs_the_example_exactly() -> None:
    q, x_hat = affine_reference(X, BITS, LO, HI)
    np.testing.assert_array_equal(q, [0, 128, 255])
    np.testing.assert_array_equal(x_hat, X)


def test_bitlens_uint8_reconstructs_the_example_exactly() -> None:
    qt = quantize(X.astype(np.float32), "uint8 asym", value_range=(LO, HI))
    assert qt.scale == np.float32(1.0)
    assert qt.zero_point == 0
    np.testing.assert_array_equal(qt.codes, [0, 128, 255])
    assert qt.codes.dtype == np.uint8
    x_hat = dequantize(qt)
    np.testing.assert_array_equal(x_hat, X.astype(np.float32))
    np.testing.assert_array_equal(qt.codes, affine_reference(X, BITS, LO, HI)[0])


def test_the_range_computed_from_the_data_gives_the_same_result() -> None:
    qt = quantize(X.astype(np.float32), "uint8 asym")  # min-max range = [0, 255]
    np.testing.assert_array_equal(qt.codes, [0, 128, 255])
    np.testing.assert_array_equal(dequantize(qt), X.astype(np.float32))


def test_the_seed_formulas_do_not_reconstruct_the_example() -> None:
    """The article writes Δ = b / (2^b - 1) and x = Δ(x_q - 1/2) + a; both are wrong.

    * The step must be the *range width* over the number of steps,
      (hi - lo)/(2^n - 1). The article puts the bit count b = 8 in the
      numerator (it also reuses b for the range's upper end), giving
      Δ = 8/255 ≈ 0.0314 (it even prints 0.125, which is 8/64, not 8/255).
      With that step x = 128 maps to code 4080 and 255 to 8128, which 8 bits
      cannot hold: the result only looks close (within Δ/2) because it
      silently uses 13 bits.
    * ``x_q = floor((x - a)/Δ + 1/2)`` is round-to-nearest, whose
      reconstruction is ``a + Δ·x_q``. Subtracting 1/2 is the midpoint rule of
      a *floor* quantizer (``floor((x - a)/Δ)``) and mixing the two shifts
      every value by Δ/2, so even the correct Δ = 1 gives [-0.5, 127.5, 254.5].
    * There is no clip to [0, 2^n - 1], so out-of-range codes go unnoticed.

    The article's claimed output [0, 128, 255] / [0, 128, 255] cannot come
    from its own code.
    """
    b = BITS
    a = LO
    seed_delta = b / (2**b - 1)
    seed_q = np.floor((X - a) / seed_delta + 0.5)
    seed_x_hat = seed_delta * (seed_q - 0.5) + a

    np.testing.assert_array_equal(seed_q, [0, 4080, 8128])
    assert seed_q.max() > 2**b - 1  # codes that do not fit in 8 bits
    assert not np.array_equal(seed_x_hat, X)
    assert np.abs(seed_x_hat - X).max() > 0.01

    # The article's printed step 0.125 does not help either.
    q_125 = np.floor(X / 0.125 + 0.5)
    np.testing.assert_array_equal(q_125, [0, 1024, 2040])
    assert not np.array_equal(0.125 * (q_125 - 0.5), X)

    # With the correct step, the "- 1/2" alone still shifts every value by Δ/2.
    delta = (HI - LO) / (2**b - 1)
    q = np.floor((X - a) / delta + 0.5)
    np.testing.assert_array_equal(q, [0, 128, 255])
    half_shifted = delta * (q - 0.5) + a
    np.testing.assert_array_equal(half_shifted, [-0.5, 127.5, 254.5])
    np.testing.assert_array_equal(delta * q + a, X)  # the consistent reconstruction
