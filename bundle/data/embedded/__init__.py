"""The embedded default dataset: synthetic radiographs with real (or grammar) reports, in the MIMIC-CXR-JPG layout.

Users without MIMIC-CXR access, the demo job and the tests all run on this dataset; its ground truth is
known, so it is also a benchmark (a trained model must draw what the labels ask for). Each item is one study
with one frontal image rendered by the phantom (:mod:`.render`) and a report:

- ``report_source="iu"`` (the default when torchxrayvision's IU X-ray reports are installed): every IU report
  is labelled by the project's labeler; reports whose positive / uncertain findings are all drawable are kept
  (Lung Opacity, Pneumonia and Enlarged Cardiomediastinum are allowed where a drawn finding implies them:
  consolidation / edema, consolidation, cardiomegaly), one per distinct text (FINDINGS + IMPRESSION as the
  MIMIC reader will read them back, normalised by :func:`bundle.data.reports.normalise_report_text`). Each
  distinct text belongs to one split (train / validate / test), drawn with the seed in proportion to the split
  fractions and stratified (normal reports; abnormal ones by their rarest finding), so every held-out split
  has normal and abnormal text and each finding with three reports or more reaches validation and test.
  A study samples only from its own split's reports: a normal one with probability ``normal_fraction``, else
  an abnormal one weighted by ``count(finding) ** -balance`` of its rarest finding within that split (keeps
  real co-occurrence and real language, lifts the rare findings). The image is drawn from that report's
  labels, with laterality / severity / zone / device words parsed near the mention (random where the report
  does not say).
- ``report_source="grammar"``: label sets come from a small co-occurrence model (heart failure: cardiomegaly,
  edema, effusions; intensive care: devices, effusion, consolidation, pneumothorax; infection: consolidation
  and effusion; isolated findings) and the report from :mod:`.report_grammar`. A validation / test
  study whose normalised text a training study also has gets new wording for the same label set from its own
  generator (a bounded number of times, then :class:`DataError`).

Either way no validation / test report text (normalised) is a training report text; validation and test never
share text in IU mode, and may in grammar mode.

Uncertain findings (-1) are drawn *mildly* (small effusion, faint small consolidation, borderline CTR
0.50-0.54, mild edema, tiny pneumothorax) and kept as -1 in the ground truth.

On disk (what the real MIMIC-CXR-JPG reader loads): ``files/pNN/pSUBJECT/sSTUDY/DICOM_ID.jpg``, reports at
``files/pNN/pSUBJECT/sSTUDY.txt``, ``mimic-cxr-2.0.0-chexpert.csv`` (labeler output on FINDINGS + IMPRESSION),
``mimic-cxr-2.0.0-split.csv`` (patient-level), ``mimic-cxr-2.0.0-metadata.csv``, plus
``embedded-ground-truth.csv`` (what each image was drawn from, with measured signs such as the CTR) and
``embedded-summary.json`` (with ``distinct_reports``: distinct report texts used per split, and in IU mode
``report_pool``: distinct source reports each split may draw from). The same seed gives byte-identical files.

Modules, in the order the data flows:

- ``spec``: the findings the phantom draws, their attributes and sign sizes; label sets for the grammar;
- ``lung_shapes``, ``patient``: lung outlines (real masks or procedural) and one patient's anatomy;
- ``drawing``, ``geometry``: raster primitives, the patient frame, heart / mediastinum and lung fields;
- ``anatomy``, ``findings``, ``devices``: the layers of a radiograph; ``render``: :func:`render_phantom`;
- ``report_grammar``, ``report_attributes``, ``iu_reports``: the report text and the attributes it states;
- ``mimic_layout``, ``writer``: the MIMIC-CXR-JPG files and :func:`make_embedded_dataset`.
"""

from .iu_reports import iu_reports_available
from .lung_shapes import LungShape, load_real_lung_shapes, procedural_lung_shape, real_lung_mask_path, real_masks_usable
from .mimic_layout import GROUND_TRUTH_CSV, SUMMARY_JSON
from .patient import Patient, sample_patient
from .render import render_phantom
from .report_attributes import finding_attributes
from .report_grammar import compose_report, spec_labels
from .spec import DEVICE_TYPES, FINDING_ATTRIBUTES, PHANTOM_FINDINGS, complete_spec, sample_grammar_spec
from .writer import REPORT_SOURCES, make_embedded_dataset

__all__ = [
    "DEVICE_TYPES",
    "FINDING_ATTRIBUTES",
    "GROUND_TRUTH_CSV",
    "PHANTOM_FINDINGS",
    "REPORT_SOURCES",
    "SUMMARY_JSON",
    "LungShape",
    "Patient",
    "complete_spec",
    "compose_report",
    "finding_attributes",
    "iu_reports_available",
    "load_real_lung_shapes",
    "make_embedded_dataset",
    "procedural_lung_shape",
    "real_lung_mask_path",
    "real_masks_usable",
    "render_phantom",
    "sample_grammar_spec",
    "sample_patient",
    "spec_labels",
]
