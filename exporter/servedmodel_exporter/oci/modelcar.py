"""The modelcar program: a static x86-64 Linux executable of 300 bytes, made here rather than compiled.

A model image has no OS layer, but a pod that cannot mount an image as a volume (Kubernetes' ImageVolume
feature off, or a container runtime too old for it) runs the image as a container beside the model server:
then the image needs one program to run. This one links ``/servedmodel/link/root`` to ``/proc/<pid>/root``
(its own root, seen from a container in the same process namespace) and sleeps until it is stopped. Its
source is ``modelcar.S`` next to this file; the bytes below are what GNU ``as`` makes of it (a unit test
assembles it again), wrapped in one ELF header and one program header.
"""

from __future__ import annotations

import struct

PATH = "/servedmodel/modelcar"  # where the program lives in the image
LINK_DIR = "/servedmodel/link"  # the shared folder it writes its link into (an emptyDir in the pod)
LINK_NAME = "root"
ARCHITECTURE = "amd64"  # the only one it is written for

CODE = bytes.fromhex(
    "b8270000000f05488d3583000000b90a"
    "00000031d248f7f180c23048ffce8816"
    "4885c075ee4883ee06c7062f70726f66"
    "c74604632f4889f3b857000000488d3d"
    "530000000f05b8580000004889df488d"
    "35420000000f054885c07509b8220000"
    "000f05ebf7bf01000000b83c0000000f"
    "05000000000000000000000000000000"
    "00000000000000000000000000000000"
    "002f726f6f74002f7365727665646d6f"
    "64656c2f6c696e6b2f726f6f7400"
)

_BASE = 0x400000
_EHDR, _PHDR = 64, 56


def executable() -> bytes:
    """The ELF file: header, one loadable read-write-execute segment holding everything (the code writes
    its pid into a buffer inside itself), entry right after the headers."""
    size = _EHDR + _PHDR + len(CODE)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)  # 64-bit, little-endian, current version, SysV
    header = ident + struct.pack(
        "<HHIQQQIHHHHHH",
        2,  # ET_EXEC
        62,  # EM_X86_64
        1,
        _BASE + _EHDR + _PHDR,  # entry
        _EHDR,  # program headers right after this header
        0,  # no section headers
        0,
        _EHDR,
        _PHDR,
        1,
        0,
        0,
        0,
    )
    program = struct.pack("<IIQQQQQQ", 1, 7, 0, _BASE, _BASE, size, size, 0x1000)  # PT_LOAD, RWX
    return header + program + CODE
