"""The core layer: threads, errors and the counter-based RNG."""
import numpy as np

import azr
from azr import _core


def test_set_num_threads_roundtrip():
    old = azr.get_num_threads()
    try:
        azr.set_num_threads(1)
        assert azr.get_num_threads() == 1
        azr.set_num_threads(2)
        assert azr.get_num_threads() == 2
    finally:
        azr.set_num_threads(old)


def _philox_ref(key, hi, lo):
    """Philox-4x32-10 written from the Salmon et al. (2011) description."""
    m0, m1, w0, w1 = 0xD2511F53, 0xCD9E8D57, 0x9E3779B9, 0xBB67AE85
    mask = 0xFFFFFFFF
    c = [lo & mask, lo >> 32, hi & mask, hi >> 32]
    k = [key & mask, key >> 32]
    for _ in range(10):
        p0, p1 = m0 * c[0], m1 * c[2]
        c = [(p1 >> 32) ^ c[1] ^ k[0], p1 & mask, (p0 >> 32) ^ c[3] ^ k[1], p0 & mask]
        k = [(k[0] + w0) & mask, (k[1] + w1) & mask]
    return tuple(c)


def test_philox_matches_reference_and_known_answer():
    # Known-answer vector from the Random123 distribution (philox4x32_10, zero key/counter).
    assert _core.philox(0, 0, 0) == (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)
    rng = np.random.default_rng(0)
    for _ in range(50):
        key, hi, lo = (int(x) for x in rng.integers(0, 2**63, size=3))
        assert _core.philox(key, hi, lo) == _philox_ref(key, hi, lo)


def test_exception_classes_are_value_errors():
    assert issubclass(azr.FormatError, ValueError)
    assert issubclass(azr.UnsupportedError, ValueError)
