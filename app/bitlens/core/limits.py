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
from bitlens.core.units import format_bytes

GIB = 1 << 30
# Protocol buffers cannot parse a message over 2 GiB; larger ONNX models keep their
# weights in external data files (https://onnx.ai/onnx/repo-docs/ExternalData.html).
MAX_MODEL_FILE_BYTES = 2 * GIB
# Plans and ORT overrides are small JSON files.
MAX_JSON_BYTES = 64 << 20
ENV_BUDGET = "BITLENS_MEMORY_BUDGET"
# The engine's activation budget had its own setting in MiB; it now sets the one budget.
LEGACY_ENV_MIB = "BITLENS_MEMORY_BUDGET_MIB"
ACTIVATION_SHARE = 4  # the engine keeps float activations in memory up to budget / this
_override: list[int] = []  # the command line's --memory-budget, when given


def set_memory_budget(nbytes: int | None) -> None:
    """Set the budget for this process (``--memory-budget``); None: back to the environment."""
    _override[:] = [] if nbytes is None else [int(nbytes)]


def memory_budget() -> int:
    """The one memory setting: how much memory Bitlens plans for.

    No single tensor or data file is decoded beyond it, and the engine keeps at most
    ``1/ACTIVATION_SHARE`` of it as float reference activations in memory (the rest goes to
    a memory-mapped scratch file, see bitlens.core.engine.store). Set by ``--memory-budget``,
    else ``BITLENS_MEMORY_BUDGET`` (bytes, or with a K/M/G suffix), else the older
    ``BITLENS_MEMORY_BUDGET_MIB`` (MiB); the default is half the machine's physical memory
    (4 GiB where that cannot be read).
    """
    if _override:
        return _override[0]
    env = os.environ.get(ENV_BUDGET, "").strip()
    if env:
        return parse_size(env)
    legacy = os.environ.get(LEGACY_ENV_MIB, "").strip()
    if legacy:
        if not legacy.isdigit() or int(legacy) <= 0:
            raise BitlensError(f"{LEGACY_ENV_MIB}={legacy!r}: expected a whole number of MiB")
        return int(legacy) << 20
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * GIB
    return max(total // 2, GIB // 4)


def activation_budget() -> int:
    """Bytes of float reference activations the engine keeps in memory by default."""
    return memory_budget() // ACTIVATION_SHARE


def parse_size(text: str, name: str = ENV_BUDGET) -> int:
    """Bytes from ``4G``, ``512M``, ``64K`` or a plain number of bytes."""
    mult = {"K": 1 << 10, "M": 1 << 20, "G": GIB, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    factor = 1
    if t and t[-1] in mult:
        factor, t = mult[t[-1]], t[:-1]
    try:
        value = int(float(t) * factor)
    except ValueError:
        raise BitlensError(f"{name}={text!r}: expected a size such as 4G") from None
    if value <= 0:
        raise BitlensError(f"{name}={text!r}: the budget must be positive")
    return value


def fmt_bytes(n: int) -> str:
    """Bytes for a message: exact below 1 KiB, else in binary units as everywhere."""
    return f"{n} bytes" if n < 1024 else format_bytes(n)


def check_budget(nbytes: int, what: str, error: type[BitlensError] = BitlensError) -> None:
    """Raise ``error`` when ``what`` would need more than the memory budget."""
    budget = memory_budget()
    if nbytes > budget:
        raise error(
            f"{what} would need {fmt_bytes(nbytes)} ({nbytes} bytes) in memory, over the "
            f"budget of {fmt_bytes(budget)}; set {ENV_BUDGET} to allow more"
        )
