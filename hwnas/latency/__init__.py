"""Device latency: profiles, runners, the timing protocol, LUTs, the calibrated predictor, fidelity and the bundle."""

from hwnas.latency.calibrate import (
    IDENTITY,
    Calibration,
    CalibrationPoint,
    calibration_archs,
    fit_calibration,
    fit_linear,
)
from hwnas.latency.harness import (
    PassRecord,
    Protocol,
    TimingStats,
    measure_block,
    measure_model_ms,
    run_protocol,
    time_loaded,
)
from hwnas.latency.lut import COLUMNS, SCHEMA, LatencyTable, load_lut, lut_key, lut_path, meta_path, save_lut
from hwnas.latency.predictor import (
    ChoiceLatency,
    LatencyPredictor,
    choice_latency_ms,
    latency_range_ms,
    predict_ms,
    raw_sum_ms,
)
from hwnas.latency.profiles import DeviceProfile, list_profiles, load_profile, profile_from_dict

__all__ = [
    "DeviceProfile",
    "load_profile",
    "list_profiles",
    "profile_from_dict",
    "TimingStats",
    "PassRecord",
    "Protocol",
    "run_protocol",
    "measure_block",
    "measure_model_ms",
    "time_loaded",
    "LatencyTable",
    "load_lut",
    "save_lut",
    "lut_key",
    "lut_path",
    "meta_path",
    "SCHEMA",
    "COLUMNS",
    "Calibration",
    "CalibrationPoint",
    "IDENTITY",
    "fit_calibration",
    "fit_linear",
    "calibration_archs",
    "LatencyPredictor",
    "ChoiceLatency",
    "predict_ms",
    "raw_sum_ms",
    "choice_latency_ms",
    "latency_range_ms",
]
