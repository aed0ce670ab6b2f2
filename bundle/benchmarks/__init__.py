"""Benchmarks of the bundle, above training, inference, evaluation and the workflows (``scripts/benchmark_*.py`` are
their command lines).

* the training benchmark (``scripts/benchmark_train.py``): ``presets`` (the network sizes benchmarked, the tests'
  tiny sizes among them), ``training`` (the trainer built from the configs over synthetic batches), ``timing`` (the
  engine against a bare loop built from the same objective functions), ``memory`` (peak memory and its linear
  model), ``sweep`` (memory at the paper's batch, one fresh process per point), ``report`` (machine and Markdown),
  ``train`` (:func:`~bundle.benchmarks.train.run_benchmark`, the whole run).
* ``report_decoder``: F alone trained by teacher forcing per text-path variant, scored by its reports' label F1.
* ``embedded``: can a small CNN read the embedded dataset's drawn findings from its images?

This package imports nothing at import time, so ``tests/tiny.py`` can read the presets cheaply.
"""
