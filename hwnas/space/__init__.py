"""Search spaces and the canonical architecture encoding."""

from hwnas.space.ops import (
    blocks_of,
    check_arch,
    contains,
    crossover,
    distinct_blocks,
    first_block,
    head_block,
    largest,
    layer_block,
    layer_choices,
    mutate,
    sample,
    smallest,
    space_size,
    stage_input_hw,
    stem_block,
)
from hwnas.space.presets import SPACE_NAMES, SpaceSpec, StageSpec, get_space, space_hash, with_io
from hwnas.space.spec import ACTS, GRAPH_REVISION, OPS, Act, Arch, BlockSpec, LayerChoice, Op, make_divisible

__all__ = [
    "ACTS", "GRAPH_REVISION", "OPS", "Act", "Arch", "BlockSpec", "LayerChoice", "Op", "make_divisible",
    "SPACE_NAMES", "SpaceSpec", "StageSpec", "get_space", "space_hash", "with_io",
    "blocks_of", "check_arch", "contains", "crossover", "distinct_blocks", "first_block", "head_block", "largest",
    "layer_block", "layer_choices", "mutate", "sample", "smallest", "space_size", "stage_input_hw", "stem_block",
]
