"""Compact sets of ids: a fingerprint of each id, 8 (or 4) bytes apiece, in sorted arrays.

A batch of ten million lines must remember which ``custom_id`` s are done. A Python ``set``
of the strings costs about 100 bytes an id (the string object and the hash table), a
gigabyte at that size; here an id is kept as a fingerprint in one of 256 ``array`` buckets
(picked by the fingerprint's top byte), each sorted once, so a look-up is one bisect and an
id costs 8 bytes (4 for the duplicate check). Building sorts one bucket at a time, so it
never needs more than one bucket's worth of Python ints on top of the arrays.

Fingerprints are Python's own ``hash()`` of the string (SipHash, 64 bits, keyed per
process): they are compared within one process and never written anywhere. Two distinct
ids share a 64-bit fingerprint with a probability of about n²/2⁶⁵ (3·10⁻⁸ for a million
ids, 3·10⁻⁶ for ten million): that is the chance that a resume takes a line as done that is
not. The duplicate check keeps 32 bits only and confirms every repeat against the real ids
(see ``_validate``), so a duplicate is never reported falsely.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterator
from itertools import pairwise

__all__ = ["FingerprintCollector", "FingerprintSet", "fingerprint", "short_fingerprint"]

_BUCKET_BITS = 8
_BUCKETS = 1 << _BUCKET_BITS
_TYPECODES = {64: "Q", 32: "I"}
_MASK64 = (1 << 64) - 1
_MASK32 = (1 << 32) - 1


def fingerprint(text: str) -> int:
    """A 64-bit fingerprint of an id (stable within this process only)."""
    return hash(text) & _MASK64


def short_fingerprint(text: str) -> int:
    """A 32-bit fingerprint of an id, for the duplicate check (repeats are confirmed)."""
    return hash(text) & _MASK32


def _typecode(bits: int) -> str:
    try:
        code = _TYPECODES[bits]
    except KeyError:
        raise ValueError(f"bits must be 64 or 32, not {bits!r}") from None
    if array(code).itemsize * 8 != bits:  # pragma: no cover - no such platform in sight
        raise RuntimeError(f"array typecode {code!r} does not hold {bits} bits here")
    return code


class FingerprintSet:
    """An immutable set of fingerprints in sorted buckets; build one with a collector."""

    __slots__ = ("_buckets", "_len", "_shift")

    def __init__(self, buckets: list[array[int]], bits: int):
        self._buckets = buckets
        self._shift = bits - _BUCKET_BITS
        self._len = sum(len(bucket) for bucket in buckets)

    @classmethod
    def empty(cls, bits: int = 64) -> FingerprintSet:
        """A set with nothing in it."""
        code = _typecode(bits)
        return cls([array(code) for _ in range(_BUCKETS)], bits)

    def __contains__(self, value: object) -> bool:
        if not self._len or not isinstance(value, int):
            return False
        bucket = self._buckets[value >> self._shift]
        position = bisect_left(bucket, value)
        return position < len(bucket) and bucket[position] == value

    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[int]:
        for bucket in self._buckets:
            yield from bucket

    @property
    def nbytes(self) -> int:
        """The bytes the fingerprints take (without the 256 small array headers)."""
        return sum(bucket.itemsize * len(bucket) for bucket in self._buckets)


class FingerprintCollector:
    """Collects fingerprints (repeats allowed) and turns them into a :class:`FingerprintSet`.

    :param bits: 64 (resume state) or 32 (the duplicate check).
    """

    __slots__ = ("_bits", "_buckets", "_shift", "count")

    def __init__(self, bits: int = 64):
        code = _typecode(bits)
        self._bits = bits
        self._shift = bits - _BUCKET_BITS
        self._buckets = [array(code) for _ in range(_BUCKETS)]
        #: How many fingerprints were added, repeats included.
        self.count = 0

    def add(self, value: int) -> None:
        """Add one fingerprint (an int of the collector's width)."""
        self._buckets[value >> self._shift].append(value)
        self.count += 1

    def __iter__(self) -> Iterator[int]:
        """Every fingerprint added, repeats included, in no particular order."""
        for bucket in self._buckets:
            yield from bucket

    def repeated(self) -> set[int]:
        """The fingerprints that were added more than once."""
        found: set[int] = set()
        for bucket in self._buckets:
            if len(bucket) > 1:
                ordered = sorted(bucket)
                found.update(a for a, b in pairwise(ordered) if a == b)
        return found

    def freeze(self, *, without: FingerprintSet | None = None) -> FingerprintSet:
        """Build the set of what was added (minus ``without``), emptying the collector.

        Bucket by bucket, so the Python ints of only one bucket exist at a time.
        """
        code = _TYPECODES[self._bits]
        buckets: list[array[int]] = []
        for position, bucket in enumerate(self._buckets):
            values = set(bucket)
            if without is not None and len(without):
                values = {value for value in values if value not in without}
            buckets.append(array(code, sorted(values)))
            self._buckets[position] = array(code)
        self.count = 0
        return FingerprintSet(buckets, self._bits)
