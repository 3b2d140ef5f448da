"""Planning: dataset fingerprint, nnU-Net-style plans (spacing, normalisation, topology, presets).

Nothing here imports torch except :func:`calibration.calibrate` / :func:`calibration.measure_step_time`.
"""

from .calibration import StepTimeModel, calibrate, load_step_time_model
from .command import format_plans, get_fingerprint, plan_command, plan_dataset
from .fingerprint import channel_scheme, compute_fingerprint, dataset_hash
from .planner import PLANS_VERSION, image_view, make_plans, target_spacing, transpose_for
from .plans_file import content_hash, is_hand_edited, load_plans, write_json_atomic
from .presets import PRESETS, PresetPolicy, augmentation_params
from .topology import Topology, get_topology, network_cost, network_dict, stage_filters

__all__ = [
    "PLANS_VERSION",
    "PRESETS",
    "PresetPolicy",
    "StepTimeModel",
    "Topology",
    "augmentation_params",
    "calibrate",
    "channel_scheme",
    "compute_fingerprint",
    "content_hash",
    "dataset_hash",
    "format_plans",
    "get_fingerprint",
    "get_topology",
    "image_view",
    "is_hand_edited",
    "load_plans",
    "load_step_time_model",
    "make_plans",
    "network_cost",
    "network_dict",
    "plan_command",
    "plan_dataset",
    "stage_filters",
    "target_spacing",
    "transpose_for",
    "write_json_atomic",
]
