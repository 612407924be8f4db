"""The NumPy Philox4x32-10 against the published known-answer vectors, and the mask contract."""

from __future__ import annotations

import numpy as np
import pytest

from dropkit.reference import philox as ph

# Known-answer vectors for Philox4x32-10 from the Random123 distribution's kat_vectors file
# (Salmon et al., SC'11): counter (4 words), key (2 words) -> output (4 words).
KAT_PHILOX4X32_10 = [
    ((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
    (
        (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF),
        (0xFFFFFFFF, 0xFFFFFFFF),
        (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD),
    ),
    (
        (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344),
        (0xA4093822, 0x299F31D0),
        (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1),
    ),
]


@pytest.mark.parametrize(("counter", "key", "expected"), KAT_PHILOX4X32_10)
def test_known_answer_vectors(counter, key, expected):
    out = ph.philox4x32_10(np.array(counter), np.array(key))
    assert out.dtype == np.uint32
    assert tuple(int(v) for v in out) == expected


def test_batched_equals_one_by_one():
    counters = np.array([c for c, _, _ in KAT_PHILOX4X32_10])
    keys = np.array([k for _, k, _ in KAT_PHILOX4X32_10])
    expected = np.array([e for _, _, e in KAT_PHILOX4X32_10], dtype=np.uint32)
    np.testing.assert_array_equal(ph.philox4x32_10(counters, keys), expected)


def test_mask_of_an_element_does_not_depend_on_the_size():
    # Element i's mask is a function of (seed, i, p) only: every prefix agrees with the longer mask.
    long = ph.philox_keep_mask(3 * ph.BLOCK + 5, 0.4, seed=77)
    for n in (0, 1, 7, ph.BLOCK - 1, ph.BLOCK + 1, 2 * ph.BLOCK):
        np.testing.assert_array_equal(ph.philox_keep_mask(n, 0.4, seed=77), long[:n])


def test_mask_reads_the_documented_word():
    # Element i = b*BLOCK + w*Q + j takes word w of counter b*Q + j (Q = BLOCK/4).
    q, seed, p = ph.BLOCK // 4, 2**40 + 3, 0.5
    mask = ph.philox_keep_mask(2 * ph.BLOCK, p, seed)
    b, w, j = 1, 2, 17
    words = ph.philox4x32_10(np.array([b * q + j, 0, 0, 0]), np.array([3, 2**8]))
    assert mask[b * ph.BLOCK + w * q + j] == (int(words[w]) >= ph.philox_drop_threshold(p))


def test_threshold_and_extremes():
    assert ph.philox_drop_threshold(0.5) == 2**31
    assert ph.philox_drop_threshold(0.0) == 0
    assert ph.philox_keep_mask(100, 0.0, 1).all()
    assert not ph.philox_keep_mask(100, 1.0, 1).any()


def test_errors():
    with pytest.raises(ValueError, match="shape"):
        ph.philox4x32_10(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="seed must be an int"):
        ph.philox_keep_mask(4, 0.5, seed=-1)
    with pytest.raises(ValueError, match="numel must be"):
        ph.philox_keep_mask(-1, 0.5, seed=0)


def test_normal_reads_the_documented_words():
    # Element b*BLOCK + w*Q + j: the Box-Muller pair of words (2*(w//2), 2*(w//2)+1) of counter
    # b*Q + j, cos for even w and sin for odd w; in float64, u = (a + 1/2)/2**32 and
    # theta = 2 pi (b + 1/2)/2**32 written out by hand.
    q, seed = ph.BLOCK // 4, 2**33 + 7
    z = ph.philox_normal(2 * ph.BLOCK, seed, np.float64)
    b, j = 1, 5
    words = ph.philox4x32_10(np.array([b * q + j, 0, 0, 0]), np.array([7, 2])).astype(np.float64)
    for w in range(4):
        a, c = words[w - w % 2], words[w - w % 2 + 1]
        radius = np.sqrt(-2 * np.log((a + 0.5) / 2**32))
        theta = 2 * np.pi * (c + 0.5) / 2**32
        expected = radius * (np.cos(theta) if w % 2 == 0 else np.sin(theta))
        assert z[b * ph.BLOCK + w * q + j] == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_normal_float32_uniforms_and_errors():
    # float32: u = (float32(a >> 1) + 1/4) / 2**31 rounds to 1 for the largest words (radius 0);
    # the angle keeps 23 bits below the octant. Both dtypes agree to float32's resolution.
    z32, z64 = (ph.philox_normal(5000, 11, dt) for dt in (np.float32, np.float64))
    np.testing.assert_allclose(z32, z64, rtol=0, atol=1e-5)
    with pytest.raises(TypeError, match="dtype must be float32 or float64"):
        ph.philox_normal(4, 1, np.float16)
    with pytest.raises(ValueError, match="seed must be an int"):
        ph.philox_normal(4, -1)
    with pytest.raises(ValueError, match="numel must be"):
        ph.philox_normal(-1, 1)
