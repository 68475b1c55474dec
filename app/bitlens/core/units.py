"""How byte counts and operation counts read, everywhere: bytes in binary (IEC) units,
1 KiB = 1024 B; counts (parameters, MACs, BOPs) with decimal suffixes, 1k = 1000.

One convention for the window, the CLI and reports, so the same size never
reads "18.4 kB" in one place and "18.0 KiB" in another. IEC 80000-13 names
the binary prefixes (https://en.wikipedia.org/wiki/Binary_prefix).
"""

from __future__ import annotations

BYTE_UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def byte_scale(n: float) -> tuple[float, str]:
    """The divisor and unit name that show ``n`` bytes with 1 to 4 integer digits."""
    divisor = 1.0
    for unit in BYTE_UNITS:
        if abs(n) < 1024 * divisor or unit == BYTE_UNITS[-1]:
            return divisor, unit
        divisor *= 1024
    raise AssertionError("unreachable")


def format_bytes(n: int | float) -> str:
    """``n`` bytes as "512 B", "18.0 KiB", "3.4 MiB"."""
    divisor, unit = byte_scale(float(n))
    return f"{n:.0f} {unit}" if unit == "B" else f"{n / divisor:.1f} {unit}"


def format_count(n: int) -> str:
    """A count as "512", "20.5k", "37.75M", "1.10G" (decimal: k = 10^3, M = 10^6, G = 10^9)."""
    if n < 1000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.1f}k"
    if n < 1_000_000_000:
        return f"{n / 1e6:.2f}M"
    return f"{n / 1e9:.2f}G"
