"""Datasets as uint8 tensors in memory, the validation split, and the on-device batch loader."""

from cifarbudget.data.core import (
    DeviceSplit,
    Split,
    default_data_dir,
    normalization_stats,
    stratified_split,
    subset,
)

__all__ = ["DeviceSplit", "Split", "default_data_dir", "normalization_stats", "stratified_split", "subset"]
