"""Function boundaries and section names of a stripped ELF executable (Envoy's PyPI build), for
the attribution tables of `make bench` (perf samples) and `make bench-instructions` (callgrind).
Python standard library only."""

from __future__ import annotations

import bisect
import struct
from pathlib import Path

from rows import log


class ElfFunctions:
    """Where each function of a stripped ELF starts and ends, from `.eh_frame_hdr` (every
    function with unwind information, i.e. all compiled code), named from `.dynsym` where it
    is exported. Envoy's PyPI build is stripped: this gives its samples function boundaries,
    so a profile diff compares functions, not single instructions."""

    def __init__(self, path: str):
        b = Path(path).read_bytes()
        shoff, = struct.unpack_from("<Q", b, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", b, 0x3A)
        phoff, = struct.unpack_from("<Q", b, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", b, 0x36)
        secs = [struct.unpack_from("<IIQQQQIIQQ", b, shoff + i * shentsize) for i in range(shnum)]
        names_off = secs[shstrndx][4]

        def name(sec: tuple) -> str:
            end = b.index(b"\0", names_off + sec[0])
            return b[names_off + sec[0]:end].decode()

        by = {name(x): x for x in secs}
        # Sections with code (SHF_EXECINSTR): tcmalloc lives in its own, `google_malloc`.
        self.sections = sorted((x[3], x[3] + x[5], name(x)) for x in secs if x[2] & 0x4)
        # PT_LOAD segments, to turn a file offset (what /proc/PID/maps gives) into an address.
        self.loads = []
        for i in range(phnum):
            p_type, _flags, p_offset, p_vaddr, _pa, p_filesz = struct.unpack_from("<IIQQQQ", b, phoff + i * phentsize)
            if p_type == 1:
                self.loads.append((p_offset, p_offset + p_filesz, p_vaddr))
        hdr = by[".eh_frame_hdr"]
        eh = by[".eh_frame"]
        h_addr, h_off = hdr[3], hdr[4]
        version, _ptr_enc, count_enc, table_enc = b[h_off:h_off + 4]
        if version != 1 or count_enc != 0x03 or table_enc != 0x3B:
            raise ValueError(f"unexpected .eh_frame_hdr encoding {count_enc:#x}/{table_enc:#x}")
        count, = struct.unpack_from("<I", b, h_off + 8)
        starts, ends = [], []
        for loc, fde in struct.iter_unpack("<ii", b[h_off + 12:h_off + 12 + 8 * count]):
            # FDE: length, CIE pointer, pc_begin (pcrel sdata4), pc_range (udata4).
            f = eh[4] + (h_addr + fde - eh[3])
            starts.append(h_addr + loc)
            ends.append(h_addr + loc + struct.unpack_from("<I", b, f + 12)[0])
        self.starts, self.ends = starts, ends
        self.names: dict[int, str] = {}
        if ".dynsym" in by and ".dynstr" in by:
            ds, dstr = by[".dynsym"], by[".dynstr"][4]
            for i in range(ds[5] // 24):
                st_name, st_info, _o, _sh, st_value, _sz = struct.unpack_from("<IBBHQQ", b, ds[4] + i * 24)
                if st_value and st_info & 0xF == 2:
                    end = b.index(b"\0", dstr + st_name)
                    self.names[st_value] = b[dstr + st_name:end].decode(errors="replace")

    def vaddr(self, file_off: int) -> int | None:
        for lo, hi, va in self.loads:
            if lo <= file_off < hi:
                return file_off - lo + va
        return None

    def section(self, addr: int) -> str:
        for lo, hi, name in self.sections:
            if lo <= addr < hi:
                return name
        return "?"

    def function(self, addr: int) -> str:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0 or addr >= self.ends[i]:
            return "envoy: no unwind entry"
        start = self.starts[i]
        return f"envoy {self.names[start]}" if start in self.names else f"envoy fn@{start:#x}"


_ELF: dict[str, ElfFunctions | None] = {}


def elf_functions(path: str) -> ElfFunctions | None:
    if path not in _ELF:
        try:
            _ELF[path] = ElfFunctions(path)
        except (OSError, ValueError, struct.error, IndexError) as e:
            log(f"no function table for {path}: {e}")
            _ELF[path] = None
    return _ELF[path]
