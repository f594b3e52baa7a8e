"""A small HyperLogLog: distinct users per window in a few hundred bytes instead of a set of ids.

The tumbling-window state that Lambda carries between invocations is capped at 1 MB per shard, so exact
sets of user ids do not fit at marketplace scale. A HyperLogLog of precision ``p`` keeps ``2**p`` one-byte
registers (standard error ≈ 1.04 / sqrt(2**p)) and two sketches merge into the sketch of the union.
:meth:`HyperLogLog.fold` lowers the precision exactly (the result equals a sketch built at the lower
precision from the same values), which is how the aggregator sheds state size at high cardinality.

Hashing is blake2b with an 8-byte digest: stable across processes and Python versions (``hash()`` is
salted per process), so sketches from different invocations and shards are compatible.
"""
from __future__ import annotations

import math
import re
from hashlib import blake2b

MIN_PRECISION = 4
MAX_PRECISION = 14
DEFAULT_PRECISION = 10
_SPARSE = 0x80  # flag in the header byte: body is (uint16 index, uint8 value) pairs
_NONZERO = re.compile(rb"[^\x00]")
_POW = [2.0 ** -r for r in range(66)]


def hash64(value: str) -> int:
    """The 64-bit hash every sketch uses (also the de-duplication hash of message ids)."""
    return int.from_bytes(blake2b(value.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def _alpha(m: int) -> float:
    if m == 16:
        return 0.673
    if m == 32:
        return 0.697
    if m == 64:
        return 0.709
    return 0.7213 / (1 + 1.079 / m)


def _check_precision(p: int) -> None:
    if not isinstance(p, int) or not MIN_PRECISION <= p <= MAX_PRECISION:
        raise ValueError(f"HyperLogLog precision must be an integer in {MIN_PRECISION}..{MAX_PRECISION}, not {p!r}")


class HyperLogLog:
    __slots__ = ("p", "registers")

    def __init__(self, p: int = DEFAULT_PRECISION, registers: bytearray | None = None) -> None:
        _check_precision(p)
        self.p = p
        if registers is None:
            registers = bytearray(1 << p)
        elif len(registers) != 1 << p:
            raise ValueError(f"{len(registers)} registers for precision {p}; expected {1 << p}")
        self.registers = registers

    @property
    def m(self) -> int:
        return 1 << self.p

    def add(self, value: str) -> None:
        self.add_hash(hash64(value))

    def add_hash(self, x: int) -> None:
        """Add an already hashed value (callers that hash once for several sketches)."""
        w_bits = 64 - self.p
        j = x >> w_bits
        rho = w_bits - (x & ((1 << w_bits) - 1)).bit_length() + 1
        if rho > self.registers[j]:
            self.registers[j] = rho

    def merge(self, other: HyperLogLog) -> None:
        """Make this the sketch of the union; a finer ``other`` is folded first, a finer self is folded too."""
        if other.p > self.p:
            other = other.fold(self.p)
        elif other.p < self.p:
            folded = self.fold(other.p)
            self.p, self.registers = folded.p, folded.registers
        self.registers = bytearray(map(max, self.registers, other.registers))

    def fold(self, to_p: int) -> HyperLogLog:
        """The same sketch at a lower precision: exactly what adding the same values at ``to_p`` gives.

        The ``k = p - to_p`` low bits of an old register index become the leading bits of the new
        register's hash suffix: if they are not all zero they alone decide the leading-zero count;
        if they are, it is ``k`` plus the old register's value.
        """
        _check_precision(to_p)
        if to_p > self.p:
            raise ValueError(f"cannot fold precision {self.p} up to {to_p}")
        if to_p == self.p:
            return HyperLogLog(self.p, bytearray(self.registers))
        k = self.p - to_p
        low = (1 << k) - 1
        out = bytearray(1 << to_p)
        for j, r in enumerate(self.registers):
            if r:
                d = j & low
                rho = k - d.bit_length() + 1 if d else k + r
                target = j >> k
                if rho > out[target]:
                    out[target] = rho
        return HyperLogLog(to_p, out)

    def estimate(self) -> float:
        """Raw HLL estimate with the alpha_m bias correction; linear counting in the small range."""
        m = self.m
        regs = self.registers
        z = sum(_POW[r] for r in regs)
        e = _alpha(m) * m * m / z
        zeros = regs.count(0)
        if e <= 2.5 * m and zeros:
            e = m * math.log(m / zeros)
        return e  # no large-range correction: with a 64-bit hash collisions are negligible

    def __len__(self) -> int:
        return round(self.estimate())

    def to_bytes(self) -> bytes:
        """Header byte (precision, sparse flag) + registers, or nonzero (index, value) pairs if shorter."""
        regs = self.registers
        nonzero = self.m - regs.count(0)
        if 3 * nonzero >= self.m:
            return bytes([self.p]) + bytes(regs)
        out = bytearray([_SPARSE | self.p])
        for found in _NONZERO.finditer(regs):  # scans in C; only the few set registers reach Python
            j = found.start()
            out += bytes((j >> 8, j & 0xFF, regs[j]))
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> HyperLogLog:
        if not data:
            raise ValueError("empty HyperLogLog encoding")
        p = data[0] & 0x7F
        _check_precision(p)
        if not data[0] & _SPARSE:
            return cls(p, bytearray(data[1:]))
        body = data[1:]
        if len(body) % 3:
            raise ValueError("truncated sparse HyperLogLog encoding")
        regs = bytearray(1 << p)
        for i in range(0, len(body), 3):
            j = (body[i] << 8) | body[i + 1]
            if j >= len(regs):
                raise ValueError(f"register index {j} out of range for precision {p}")
            regs[j] = body[i + 2]
        return cls(p, regs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HyperLogLog) and self.p == other.p and self.registers == other.registers

    def __repr__(self) -> str:
        return f"HyperLogLog(p={self.p}, estimate={self.estimate():.0f})"
