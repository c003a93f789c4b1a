"""What the built extension needs from the system at load time: libfabric is loaded only when
a libfabric transport is created (so `import uccl.ep` works where it is not installed), and
PyTorch is never linked (tensors cross as DLPack)."""

import struct

from uccl.ep import _C

DT_NEEDED, DT_STRTAB = 1, 5
PT_DYNAMIC = 2


def needed_libraries(path: str) -> list[str]:
    """DT_NEEDED entries of a 64-bit little-endian ELF shared object (an independent reader, so
    the test does not depend on binutils)."""
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1, "not a 64-bit LE ELF"
    phoff, phentsize, phnum = (
        struct.unpack_from("<Q", data, 0x20)[0],
        struct.unpack_from("<H", data, 0x36)[0],
        struct.unpack_from("<H", data, 0x38)[0],
    )
    loads, dynamic = [], None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize
        )
        if p_type == 1:  # PT_LOAD: maps virtual addresses to file offsets
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    assert dynamic is not None, "no dynamic section"
    entries, strtab_addr = [], None
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        if tag == DT_NEEDED:
            entries.append(value)
        elif tag == DT_STRTAB:
            strtab_addr = value
    strtab = next(
        off + strtab_addr - va for va, off, size in loads if va <= strtab_addr < va + size
    )
    return [data[strtab + e : data.index(b"\0", strtab + e)].decode() for e in entries]


def test_extension_loads_without_libfabric_and_pytorch():
    needed = needed_libraries(_C.__file__)
    assert any(n.startswith("libc.so") for n in needed), needed  # the reader works
    assert not [n for n in needed if "fabric" in n], needed
    assert not [n for n in needed if n.startswith(("libtorch", "libc10"))], needed
