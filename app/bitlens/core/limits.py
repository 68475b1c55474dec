"""Size limits every reader checks before it allocates.

A hostile or broken file can declare sizes it does not hold (a 128-byte
model with a sparse tensor of [100000, 100000], a 200-byte ``.npz`` whose
header asks for 715 GiB). Readers compare what a file declares with what
it holds and with :func:`memory_budget` before allocating anything, and
refuse with a message that gives the number.
"""

from __future__ import annotations

import os

from bitlens.core.errors import BitlensError

GIB = 1 << 30
# Protocol buffers cannot parse a message over 2 GiB; larger ONNX models keep their
# weights in external data files (https://onnx.ai/onnx/repo-docs/ExternalData.html).
MAX_MODEL_FILE_BYTES = 2 * GIB
# Plans and ORT overrides are small JSON files.
MAX_JSON_BYTES = 64 << 20
ENV_BUDGET = "BITLENS_MEMORY_BUDGET"


def memory_budget() -> int:
    """Bytes one tensor or data file may occupy once decoded.

    ``BITLENS_MEMORY_BUDGET`` (bytes, or with a K/M/G suffix) sets it;
    the default is half the machine's physical memory (4 GiB where that
    cannot be read).
    """
    env = os.environ.get(ENV_BUDGET, "").strip()
    if env:
        return parse_size(env)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * GIB
    return max(total // 2, GIB // 4)


def parse_size(text: str) -> int:
    mult = {"K": 1 << 10, "M": 1 << 20, "G": GIB}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    if t and t[-1] in mult:
        factor, t = mult[t[-1]], t[:-1]
    try:
        value = int(float(t) * factor)
    except ValueError:
        raise BitlensError(f"{ENV_BUDGET}={text!r}: expected a size such as 4G") from None
    if value <= 0:
        raise BitlensError(f"{ENV_BUDGET}={text!r}: the budget must be positive")
    return value


def fmt_bytes(n: int) -> str:
    """Bytes for a message: exact below 1 KiB, else with a binary unit."""
    if n < 1024:
        return f"{n} bytes"
    for unit, size in (("TiB", 1 << 40), ("GiB", GIB), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_budget(nbytes: int, what: str, error: type[BitlensError] = BitlensError) -> None:
    """Raise ``error`` when ``what`` would need more than the memory budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(
            f"{what} would need {fmt_bytes(nbytes)} ({nbytes} bytes) in memory, over the "
            f"budget of {fmt_bytes(budget)}; set {ENV_BUDGET} to allow more"
        )
