"""Device profiles: how a device is timed (runtime, provider, threads, batch, dtype) and with what protocol.

A profile is a small YAML file (`profiles/<name>.yaml`, read with `yaml.safe_load`) turned into a frozen `DeviceProfile`.
Every field is validated here, so a typo in a profile fails before minutes of profiling, not after. The same profile is
stored in each LUT's metadata, so a table always says how it was measured.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from hwnas.errors import HwnasError
from hwnas.latency.protocol import Protocol

__all__ = [
    "DeviceProfile",
    "RUNTIMES",
    "PROVIDERS",
    "DTYPES",
    "CLOCKS",
    "profile_timer",
    "load_profile",
    "profile_from_dict",
    "profiles_dir",
    "data_root",
    "list_profiles",
]

Runtime = Literal["onnxruntime", "torch", "executorch"]
Provider = Literal["cpu", "cuda"]
Dtype = Literal["fp32", "int8"]
Clock = Literal["thread", "wall"]
RUNTIMES: tuple[str, ...] = ("onnxruntime", "torch", "executorch")
PROVIDERS: tuple[str, ...] = ("cpu", "cuda")
DTYPES: tuple[str, ...] = ("fp32", "int8")
CLOCKS: tuple[str, ...] = ("thread", "wall")


_PROTOCOL = Protocol()


@dataclass(frozen=True, slots=True)
class DeviceProfile:
    """How to time blocks and models on one device.

    Protocol fields (see `hwnas.latency.harness`): `warmup_s` of global warm-up over all items before anything is timed,
    `warmup` untimed runs per item, `rounds` interleaved passes in a fresh random order, `repeats` timed runs per item per
    pass; items whose across-pass CV exceeds `max_cv` get up to `remeasure` extra passes. `calib_subnets` whole subnets are
    timed with the blocks to fit the predictor's calibration, and then `calib_passes` more interleaved passes among
    themselves with the whole-model protocol validation uses (`hwnas.latency.harness.whole_model_protocol`).

    `clock`: "thread" times with the calling thread's CPU clock (`time.thread_time_ns`). With one intra-op thread the
    runtime computes in the calling thread, so this equals wall time on an idle core but does not count the time other
    processes hold the core — the only way to get stable tables on a shared machine, where a subnet timed by wall clock
    while other jobs run reads much slower than on the idle machine and the thread clock reads the same. "wall"
    (`perf_counter_ns`) is required when the runtime computes in other threads (threads > 1, GPUs).
    """

    name: str
    runtime: Runtime = "onnxruntime"
    provider: Provider = "cpu"
    threads: int = 1
    batch: int = 1
    dtype: Dtype = "fp32"
    clock: Clock = "wall"
    warmup_s: float = _PROTOCOL.warmup_s  # the timing protocol's defaults are declared once, in `protocol.Protocol`
    warmup: int = _PROTOCOL.warmup
    rounds: int = _PROTOCOL.rounds
    repeats: int = _PROTOCOL.repeats
    max_cv: float = _PROTOCOL.max_cv
    remeasure: int = _PROTOCOL.remeasure
    calib_subnets: int = 24
    calib_passes: int = _PROTOCOL.calib_passes
    remote: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        where = f"profile {self.name!r}"
        if not isinstance(self.name, str) or not self.name or any(c in self.name for c in "/\\ \t"):
            raise HwnasError(f"{where}: name must be a non-empty word without slashes or spaces")
        for field, allowed in (("runtime", RUNTIMES), ("provider", PROVIDERS), ("dtype", DTYPES), ("clock", CLOCKS)):
            if getattr(self, field) not in allowed:
                raise HwnasError(f"{where}: {field} {getattr(self, field)!r} is not one of {', '.join(allowed)}")
        for field, low, high in (
            ("threads", 1, 256),
            ("batch", 1, 4096),
            ("warmup", 0, 10_000),
            ("rounds", 1, 1000),
            ("repeats", 1, 100_000),
            ("remeasure", 0, 100),
            ("calib_subnets", 0, 10_000),
            ("calib_passes", 0, 1000),
        ):
            value = getattr(self, field)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise HwnasError(f"{where}: {field} must be an integer in {low}..{high}, got {value!r}")
        for field, flow, fhigh in (("warmup_s", 0.0, 3600.0), ("max_cv", 0.0, 10.0)):
            value = getattr(self, field)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not flow <= value <= fhigh
            ):
                raise HwnasError(f"{where}: {field} must be a number in {flow}..{fhigh}, got {value!r}")
        if self.clock == "thread" and (self.threads != 1 or self.provider != "cpu"):
            raise HwnasError(f"{where}: clock 'thread' only measures single-threaded CPU inference; use clock: wall")
        if self.runtime == "torch" and self.dtype != "fp32":
            raise HwnasError(f"{where}: the torch runtime times fp32 only; use dtype fp32 or runtime onnxruntime")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_FIELDS = {f.name for f in dataclasses.fields(DeviceProfile)}


def profile_from_dict(data: Any, *, where: str) -> DeviceProfile:
    """Validate a parsed mapping (from YAML or LUT metadata); unknown keys are errors, not silently ignored."""
    if not isinstance(data, dict):
        raise HwnasError(f"{where}: a profile must be a mapping of fields, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - _FIELDS)
    if unknown:
        raise HwnasError(f"{where}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(_FIELDS))}")
    if "name" not in data:
        raise HwnasError(f"{where}: missing field 'name'")
    return DeviceProfile(**data)


def data_root() -> Path:
    """Where the shipped `profiles/` and `latency_tables/` are: the source checkout beside the package (editable
    install), else `<prefix>/share/hwnas`, where a wheel installs them (pyproject's data-files)."""
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "profiles").is_dir():
        return checkout
    return Path(sys.prefix) / "share" / "hwnas"


def profiles_dir() -> Path:
    """The shipped device profiles (`profiles/` of the checkout, or of the installed data)."""
    return data_root() / "profiles"


def list_profiles() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in profiles_dir().glob("*.yaml")))


def load_profile(name_or_path: str | Path) -> DeviceProfile:
    """A profile by name (`profiles/<name>.yaml`) or by path to a YAML file."""
    import yaml  # only needed here; keeps `hwnas --help` fast

    text = str(name_or_path)
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        path = profiles_dir() / f"{text}.yaml"
        if not path.is_file():
            names = ", ".join(list_profiles()) or "none"
            raise HwnasError(f"unknown device profile {text!r}; available: {names} (or pass a path to a .yaml file)")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise HwnasError(f"cannot read profile {path}: {exc.strerror}; check the path") from None
    except yaml.YAMLError as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" line {line + 1}" if line is not None else ""
        raise HwnasError(f"profile {path}{at} is not valid YAML; fix the file") from None
    if isinstance(data, dict) and "name" not in data:
        data = {**data, "name": path.stem}
    return profile_from_dict(data, where=f"profile {path}")


def profile_timer(profile: DeviceProfile) -> Callable[[], int]:
    """The nanosecond clock the profile times with (see `DeviceProfile.clock`)."""
    from hwnas.latency.protocol import clock_timer

    return clock_timer(profile.clock)
