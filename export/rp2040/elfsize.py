"""Flash and static RAM of a firmware ELF from its section and symbol tables: the one sizer the firmware build's
size report and the benchmark harness both use. Hand-written (ELF32 little-endian only, ~50 lines), so neither
needs binutils nor pyelftools."""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

from edgecore.errors import UserError

SHT_SYMTAB, SHT_NOBITS, SHF_ALLOC = 2, 8, 0x2
FLASH_START = 0x10000000


@dataclass
class Section:
    name: str
    addr: int
    size: int
    nobits: bool


def _cstr(blob: bytes, off: int) -> str:
    return blob[off:blob.index(b"\0", off)].decode("ascii", "replace")


def read_elf(path: Path) -> tuple[list[Section], dict[str, int]]:
    """(allocated sections, symbol name -> value) of a 32-bit little-endian ELF."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 1 or data[5] != 1:
        raise UserError(f"{path} is not a 32-bit little-endian ELF file")
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    headers = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    names = data[headers[shstrndx][4]:headers[shstrndx][4] + headers[shstrndx][5]]
    sections, symbols = [], {}
    for name, typ, flags, addr, off, size, link, _, _, entsize in headers:
        if flags & SHF_ALLOC and size:
            sections.append(Section(_cstr(names, name), addr, size, typ == SHT_NOBITS))
        if typ == SHT_SYMTAB:
            strtab = headers[link]
            strings = data[strtab[4]:strtab[4] + strtab[5]]
            for i in range(size // entsize):
                st_name, st_value = struct.unpack_from("<II", data, off + i * entsize)
                if st_name:
                    symbols[_cstr(strings, st_name)] = st_value
    return sections, symbols


def firmware_memory(path: Path, ram_start: int = 0x20000000) -> dict:
    """flash = bytes stored in flash (code, rodata, .data's initial values); ram = data + bss + stack. The
    linker script's `.stack` section holds only the alignment padding before __StackLimit (the stack itself is
    __StackTop - __StackLimit): it is not static RAM."""
    sections, symbols = read_elf(path)
    sections = [s for s in sections if s.name != ".stack"]
    flash = sum(s.size for s in sections if not s.nobits)
    static_ram = sum(s.size for s in sections if s.addr >= ram_start)
    stack = symbols.get("__StackTop", 0) - symbols.get("__StackLimit", 0)
    return {"flash_bytes": flash, "static_ram_bytes": static_ram, "stack_bytes": max(stack, 0),
            "ram_bytes": static_ram + max(stack, 0),
            "flash_sections": {s.name: s.size for s in sections if not s.nobits},
            "ram_sections": {s.name: s.size for s in sections if s.addr >= ram_start}}


_MAP_INPUT = re.compile(r"^ (\.\S+|COMMON)?\s+0x([0-9a-f]+)\s+0x([0-9a-f]+)\s+(\S+\.o)$")


def object_footprint(map_path: Path, objects: tuple[str, ...], ram_start: int = 0x20000000) -> dict:
    """Flash and static RAM that the named object files (e.g. usb.o) take in the linked image, from the GNU ld
    map: code and constants count as flash, .bss as RAM, initialised data as both (stored in flash, copied)."""
    text = Path(map_path).read_text(errors="replace")
    start = text.find("Linker script and memory map")
    if start < 0:
        raise UserError(f"{map_path} is not a GNU ld map file")
    flash = ram = 0
    section = None
    for line in text[start:].splitlines():
        m = _MAP_INPUT.match(line)
        if not m:
            section = line.strip() if re.fullmatch(r" \.\S+", line) else None
            continue
        name, addr, size = m.group(1) or section, int(m.group(2), 16), int(m.group(3), 16)
        section = None
        if Path(m.group(4)).name not in objects or not size or not name:
            continue
        if addr < FLASH_START:  # debug sections: not in the image
            continue
        zeroed = name.startswith(".bss") or name == "COMMON"
        ram += size if addr >= ram_start else 0
        flash += 0 if zeroed else size
    return {"flash_bytes": flash, "static_ram_bytes": ram}
