"""What this CPU computes fast below fp32, read from its feature flags (/proc/cpuinfo), never assumed: one
machine has bf16 units, the next may not. bf16 units (AMX or AVX-512 BF16) make bf16 matrix products faster
than fp32; int8 dot-product units (AMX or VNNI) do the same for int8. Without torch, so provenance reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

BF16_FLAGS = ("amx_bf16", "avx512_bf16")
INT8_FLAGS = ("amx_int8", "avx512_vnni", "avx_vnni")
CPUINFO = Path("/proc/cpuinfo")


@dataclass(frozen=True)
class CpuUnits:
    """The low-precision flags a CPU reports (only those of BF16_FLAGS and INT8_FLAGS)."""

    flags: frozenset[str] = frozenset()

    @property
    def bf16(self) -> bool:
        return any(flag in self.flags for flag in BF16_FLAGS)

    @property
    def int8(self) -> bool:
        return any(flag in self.flags for flag in INT8_FLAGS)

    def to_dict(self) -> dict:
        """Each flag's presence, and the two verdicts, as provenance records them."""
        return {**{flag: flag in self.flags for flag in BF16_FLAGS + INT8_FLAGS},
                "bf16_units": self.bf16, "int8_units": self.int8}


def detect(cpuinfo: Path = CPUINFO) -> CpuUnits:
    """The units of the CPU that `cpuinfo` describes (its first `flags` line). No such file (macOS, Windows)
    reads as no units, so `auto` stays fp32 there."""
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return CpuUnits()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return CpuUnits(frozenset(value.split()) & frozenset(BF16_FLAGS + INT8_FLAGS))
    return CpuUnits()
