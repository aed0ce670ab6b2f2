"""Experiments built on the whole bundle: they train, generate and evaluate through the configs and
``bundle.evaluation``, and write results pages.

Modules: ``settings`` (the settings, the preset and the targets), ``runs`` (training runs reused or resumed, the shared
classifiers, generation, training logs), ``tables`` (summary rows, means over seeds, Markdown tables), ``targets``
(targets and the rotation comparison), ``page`` (the results page and its JSON), ``reproduce`` (the embedded
reproduction end to end), ``augmentation`` (a classifier trained on real + k x synthetic data) and ``cli`` (the fire
runner of their command lines: unknown flags and ``--help`` handled before any work).
"""
