"""Shrink a bundled ICU data library to what Qt uses: ``python icudata.py LIBICUDATA``.

Qt Core links to ICU (the PySide6 wheels carry ICU 73), and ICU's data library is the
largest single file of the bundle (31 MiB). Qt calls ICU for collation (QCollator, the
file dialog's sorting), case mapping (QLocale::toUpper), legacy text codecs
(QStringConverter) and time-zone display names, never for ICU's own number, unit,
currency, language or region names, transliteration, rule-based number formatting or
break iteration (Qt has its own text boundaries). Those item groups are removed with
``icupkg``, ICU's tool for exactly this
(https://unicode-org.github.io/icu/userguide/icu_data/#customizing-icus-data-library),
and the data is linked back into a library of the same name exporting the same symbol.

Linux only; needs ``icupkg`` (Debian: icu-devtools) and binutils (``readelf``, ``as``,
``ld``). Without them it says so and leaves the library alone. tests/test_bundle.py
checks Qt's collation, case mapping and codecs against the untrimmed data.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# ICU data item folders Qt never reads (see the module docstring).
REMOVED_GROUPS = ("brkitr", "curr", "lang", "rbnf", "region", "translit", "unit")
TOOLS = ("icupkg", "readelf", "as", "ld")


def _out(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _entry_symbol(lib: Path) -> tuple[str, int, int]:
    """The ``icudtNN_dat`` symbol: name, address and size."""
    for line in _out("readelf", "-W", "--dyn-syms", str(lib)).splitlines():
        f = line.split()
        if len(f) >= 8 and re.fullmatch(r"icudt\d+_dat", f[7]) and f[3] == "OBJECT":
            return f[7], int(f[1], 16), int(f[2], 0)
    raise SystemExit(f"icudata: {lib} exports no icudtNN_dat symbol")


def _file_offset(lib: Path, addr: int) -> int:
    """Where the loaded address ``addr`` lies in the file, from the section table."""
    for line in _out("readelf", "-W", "-S", str(lib)).splitlines():
        m = re.search(r"\]\s+\S+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)", line)
        if m:
            start, off, size = (int(g, 16) for g in m.groups())
            if start and start <= addr < start + size:
                return addr - start + off
    raise SystemExit(f"icudata: no section of {lib} holds the ICU data")


def _soname(lib: Path) -> str:
    m = re.search(r"\(SONAME\).*\[(.+)\]", _out("readelf", "-d", str(lib)))
    return m.group(1) if m else lib.name


def shrink(lib: Path) -> tuple[int, int]:
    """Rewrite ``lib`` without the removed groups; returns the sizes before and after."""
    symbol, addr, size = _entry_symbol(lib)
    offset = _file_offset(lib, addr)
    data = lib.read_bytes()[offset : offset + size]
    if data[2:4] != b"\xda\x27":  # the magic of every ICU data file (udata.h)
        raise SystemExit(f"icudata: {symbol} in {lib} is not ICU data")
    package = symbol.removesuffix("_dat") + "l"  # little-endian package name, icudt73l
    with tempfile.TemporaryDirectory(prefix="bitlens-icu-") as tmp:
        t = Path(tmp)
        (t / "in").mkdir()
        (t / "out").mkdir()
        (t / "in" / f"{package}.dat").write_bytes(data)
        items = _out("icupkg", "-l", str(t / "in" / f"{package}.dat")).split()
        removed = [i for i in items if i.split("/")[0] in REMOVED_GROUPS]
        (t / "removed.txt").write_text("\n".join(removed) + "\n")
        subprocess.run(
            ["icupkg", "-r", str(t / "removed.txt"), str(t / "in" / f"{package}.dat"),
             str(t / "out" / f"{package}.dat")],
            check=True, capture_output=True,
        )  # fmt: skip
        asm = t / "data.s"
        asm.write_text(
            "\t.section .rodata\n\t.balign 16\n"
            f"\t.globl {symbol}\n\t.type {symbol},@object\n{symbol}:\n"
            f'\t.incbin "{t / "out" / f"{package}.dat"}"\n'
            f"\t.size {symbol}, .-{symbol}\n"
            '\t.section .note.GNU-stack,"",@progbits\n'
        )
        subprocess.run(["as", "-o", str(t / "data.o"), str(asm)], check=True)
        new = t / lib.name
        subprocess.run(
            ["ld", "-shared", "-soname", _soname(lib), "-o", str(new), str(t / "data.o")],
            check=True,
        )
        before = lib.stat().st_size
        os.replace(shutil.copy2(new, lib.with_name(lib.name + ".tmp")), lib)
        return before, lib.stat().st_size


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: icudata.py LIBICUDATA", file=sys.stderr)
        return 2
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if not sys.platform.startswith("linux") or missing:
        why = f"missing {', '.join(missing)}" if missing else "not Linux"
        print(f"icudata: ICU data left whole ({why})", file=sys.stderr)
        return 0
    before, after = shrink(Path(argv[0]))
    print(f"icudata: {argv[0]}: {before / 2**20:.1f} MiB -> {after / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
