"""Stable hashes and per-row seeded draws.

Every random decision in the pipeline is a pure function of (seed, purpose, row key): adding rows
never changes the draws of existing rows, and no global RNG state is involved.

Algorithm (documented so any implementation can reproduce it): ``k = BLAKE2b-64(key)``,
``p = BLAKE2b-64("<seed>|<purpose>")``, draw = ``splitmix64(k XOR p) >> 11`` scaled to [0, 1).
Keys are hashed once; each further purpose costs one vectorised mix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_INV53 = 1.0 / float(1 << 53)


def hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "big")


def short_id(*parts: object, length: int = 16) -> str:
    """A stable hex id over ``parts`` (used for sample ids and request hashes)."""
    h = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8"), digest_size=max(8, length // 2))
    return h.hexdigest()[:length]


def key_hashes(keys: Iterable[object]) -> np.ndarray:
    """BLAKE2b-64 of each key's string form, as uint64."""
    blake = hashlib.blake2b
    digests = b"".join([blake(k.encode("utf-8"), digest_size=8).digest() for k in map(str, keys)])
    return np.frombuffer(digests, dtype=">u8").astype(np.uint64)  # big-endian, as hash64 reads a digest


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def draws(seed: int, purpose: str, hashes: np.ndarray) -> np.ndarray:
    """Uniform draws in [0, 1), one per key hash, for ``(seed, purpose)``."""
    p = np.uint64(hash64(f"{seed}|{purpose}"))
    with np.errstate(over="ignore"):
        z = _mix(np.asarray(hashes, dtype=np.uint64) ^ p)
    return (z >> np.uint64(11)).astype(np.float64) * _INV53


def units(seed: int, purpose: str, keys: Iterable[object]) -> np.ndarray:
    return draws(seed, purpose, key_hashes(keys))


def unit(seed: int, purpose: str, key: object) -> float:
    """A uniform draw in [0, 1) for one row."""
    return float(units(seed, purpose, [key])[0])


def pick(u: np.ndarray, n: int | Sequence[int] | np.ndarray) -> np.ndarray:
    """Map draws ``u`` to indices in ``range(n)`` (``n`` may vary per row)."""
    n_arr = np.asarray(n, dtype=np.int64)
    if np.any(n_arr <= 0):
        raise ValueError("choice over an empty range")
    return np.minimum((u * n_arr).astype(np.int64), n_arr - 1)


def choice(seed: int, purpose: str, key: object, n: int) -> int:
    """An index in ``range(n)`` drawn for one row."""
    return int(pick(units(seed, purpose, [key]), n)[0])


def ranked(seed: int, purpose: str, keys: Sequence[object]) -> np.ndarray:
    """Positions of ``keys`` in a seeded order: the first k are a seeded sample of size k."""
    u = units(seed, purpose, keys)
    return np.lexsort((np.arange(len(u)), u))
