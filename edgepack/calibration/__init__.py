"""Calibration: sample data in, per-tensor activation ranges out.

``load_samples`` reads .npy/.npz files, folders of .npy or images, and Python iterables (torch
DataLoaders included) into a ``SampleSet``; ``make_observer`` gives a streaming range observer
(minmax, percentile, mse, entropy) with bounded state for one tensor; ``calibrate`` (``calibrate_graph``) streams
the samples through the float graph and returns it with QuantParams on every tensor (quantize.py).
"""
from .calibrate import Calibration, calibrate, calibrate_graph, collect_ranges
from .data import SampleSet, load_labels, load_samples
from .observers import (METHODS, EntropyObserver, HistogramObserver, MinMaxObserver, MseObserver,
                        Observer, PercentileObserver, make_observer)

__all__ = ["calibrate", "Calibration", "calibrate_graph", "collect_ranges", "SampleSet", "load_samples", "load_labels", "METHODS", "Observer", "MinMaxObserver",
           "HistogramObserver", "PercentileObserver", "MseObserver", "EntropyObserver", "make_observer"]
