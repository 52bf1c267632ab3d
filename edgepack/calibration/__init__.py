"""Calibration: sample data in, per-tensor activation ranges out.

``load_samples`` reads .npy/.npz files, folders of .npy or images, and Python iterables (torch
DataLoaders included) into a ``SampleSet``; ``make_observer`` gives a streaming range observer
(minmax, percentile, mse, entropy) with bounded state for one tensor.
"""
from .data import SampleSet, load_labels, load_samples
from .observers import (METHODS, EntropyObserver, HistogramObserver, MinMaxObserver, MseObserver,
                        Observer, PercentileObserver, make_observer)

__all__ = ["SampleSet", "load_samples", "load_labels", "METHODS", "Observer", "MinMaxObserver",
           "HistogramObserver", "PercentileObserver", "MseObserver", "EntropyObserver", "make_observer"]
