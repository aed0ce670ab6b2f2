"""Bundle inference: label-conditional paired samples (image + report) from a trained EMIXER, written as a dataset.

configs/inference.json builds, in MONAI's inference layout:

* ``networks``: :func:`.checkpoints.load_inference_weights` (the EMA generator and the report decoder of a training
  checkpoint, or of a released ``models/model.pt``);
* ``dataset``: one item per sample to draw, ``{"sample_index", "seed", "labels"}``, made by
  :func:`.conditioning.conditioning_items` from the user's label choice;
* ``evaluator``: :class:`.sampler.EMIXERSampler`, which draws each sample from its own seed and greedy-decodes its
  report (from the image alone by default);
* ``handlers``: :class:`.saver.PairedOutputSaver` hands every batch to :class:`.writer.PairedDatasetWriter`
  (images in :mod:`.formats`, reports, manifest, datalist, :mod:`.contact_sheet`), which checks the disk budget
  first (:mod:`.disk`) and resumes an interrupted run.

The names below are importable from ``bundle.inference`` itself.
"""

from bundle.inference.checkpoints import (
    checkpoint_iteration,
    checkpoint_state,
    latest_checkpoint,
    load_inference_weights,
    load_network_weights,
    read_checkpoint,
)
from bundle.inference.conditioning import SEED_STRIDE, conditioning_items, training_label_rows
from bundle.inference.disk import check_free_disk, estimate_bytes_per_sample
from bundle.inference.formats import (
    OUTPUT_FORMATS,
    PIXEL_SPACING_MM,
    SECONDARY_CAPTURE_IMAGE_STORAGE,
    SYNTHETIC_NOTE,
    SYNTHETIC_PATIENT_NAME,
    check_dicom_synthetic,
    nifti_affine,
    write_dicom,
    write_nifti,
    write_png,
    write_report,
)
from bundle.inference.sampler import REPORT_SOURCES, EMIXERSampler, check_report_source, sample_latents
from bundle.inference.saver import PairedOutputSaver, decode_report_tokens
from bundle.inference.writer import PairedDatasetWriter

__all__ = [
    # checkpoints
    "latest_checkpoint",
    "checkpoint_iteration",
    "checkpoint_state",
    "read_checkpoint",
    "load_network_weights",
    "load_inference_weights",
    # conditioning and drawing
    "SEED_STRIDE",
    "conditioning_items",
    "training_label_rows",
    "sample_latents",
    "REPORT_SOURCES",
    "check_report_source",
    "EMIXERSampler",
    "decode_report_tokens",
    "PairedOutputSaver",
    # output
    "PairedDatasetWriter",
    "OUTPUT_FORMATS",
    "SYNTHETIC_NOTE",
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "SYNTHETIC_PATIENT_NAME",
    "PIXEL_SPACING_MM",
    "nifti_affine",
    "write_png",
    "write_nifti",
    "write_dicom",
    "check_dicom_synthetic",
    "write_report",
    "estimate_bytes_per_sample",
    "check_free_disk",
]
