"""Facts about the machine and software a measurement was taken on (stored in LUT metadata, model cards, benchmarks).

Standard library only: `hwnas bundle` copies this file next to the device scripts, so a table imported from a device
names that device's CPU the way a table built here names this one."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import os
import platform
import time

__all__ = ["cpu_model", "cpu_signature", "other_cpu", "package_versions", "machine_info", "cores_in_use"]

# The instruction sets that change which kernels onnxruntime / XNNPACK / oneDNN pick, hence a table's latencies
# (x86, then Arm: dot product, int8 matrix multiply, fp16 arithmetic, bf16, SVE).
_KERNEL_ISA = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile")
_KERNEL_ISA_ARM = ("asimddp", "i8mm", "asimdhp", "bf16", "sve", "sve2", "sme")


def _cpuinfo_fields() -> dict[str, str] | None:
    """The fields of /proc/cpuinfo's first processor (plus the machine-wide ones Arm kernels print after the last
    processor, such as "Hardware"); None where it is missing."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                key, sep, value = line.partition(":")
                if sep and key.strip() not in fields:
                    fields[key.strip()] = value.strip()
    except OSError:
        return None
    return fields


def cpu_model() -> str:
    """The CPU's name: x86 "model name"; on Arm, the SoC ("Hardware") or the core's implementer/part codes."""
    fields = _cpuinfo_fields() or {}
    if fields.get("model name"):
        return fields["model name"]
    if fields.get("Hardware"):
        return fields["Hardware"]
    if "CPU implementer" in fields:
        return f"Arm implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')}"
    return platform.processor() or platform.machine()


def cpu_signature() -> str | None:
    """Vendor, family/model and kernel-relevant instruction sets of this CPU, as
    '<vendor_id> family <F> model <M> [<instruction sets of _KERNEL_ISA present>]' (Arm:
    'Arm implementer <I> part <P> variant <V> [<features of _KERNEL_ISA_ARM present>]'); None where /proc/cpuinfo is
    missing.

    Why: under a hypervisor the model name says little — the same name can stand for an AVX2-only host and for a host
    of another family with AVX-512 VNNI — so a table keyed by name alone would be reused on a CPU it does not describe.
    """
    fields = _cpuinfo_fields()
    if not fields:
        return None
    if "cpu family" in fields:
        flags = set(fields.get("flags", "").split())
        isa = " ".join(f for f in _KERNEL_ISA if f in flags)
        return f"{fields.get('vendor_id', '?')} family {fields['cpu family']} model {fields.get('model', '?')} [{isa}]"
    if "CPU implementer" in fields:
        features = set(fields.get("Features", "").split())
        isa = " ".join(f for f in _KERNEL_ISA_ARM if f in features)
        return (
            f"Arm implementer {fields['CPU implementer']} part {fields.get('CPU part', '?')} "
            f"variant {fields.get('CPU variant', '?')} [{isa}]"
        )
    return None


def other_cpu(built_cpu: str | None, built_signature: str | None) -> tuple[str, str | None, str] | None:
    """How a measurement's CPU differs from this one: ("cpu", its name, this name), ("cpu signature", its name and
    signature, this name and signature), or None when they are the same. A record without a signature (older tables)
    is held to the name only."""
    here = cpu_model()
    if built_cpu != here:
        return "cpu", built_cpu, here
    here_signature = cpu_signature()
    if built_signature and here_signature and built_signature != here_signature:
        return "cpu signature", f"{built_cpu} ({built_signature})", f"{here} ({here_signature})"
    return None


def package_versions(names: tuple[str, ...] = ("torch", "onnx", "onnxruntime", "numpy")) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "missing"
    return versions


def machine_info() -> dict[str, object]:
    return {
        "cpu": cpu_model(),
        "cpu_signature": cpu_signature(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": package_versions(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def cores_in_use(window_s: float) -> float | None:
    """Average number of busy cores over the next `window_s` seconds (all processes), from /proc/stat's aggregate
    line; None where /proc/stat is missing. Unlike the 1-minute load average it does not lag behind a job that ended."""

    def read() -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as fh:
                fields = [int(v) for v in fh.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        if len(fields) < 4:
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields[:8]), idle

    first = read()
    if first is None:
        return None
    time.sleep(window_s)
    second = read()
    if second is None or second[0] <= first[0]:
        return None
    total, idle = second[0] - first[0], second[1] - first[1]
    return (os.cpu_count() or 1) * (1 - idle / total)
