"""DICOM output and its check: a Secondary Capture Image Storage object of a synthetic image.

:func:`write_dicom` writes explicit VR little endian with Conversion Type ``SYN`` (synthetic image), a synthetic
patient identity and no dates of birth or institution. Modality is ``OT`` (other): nothing acquired the image, and
``DX`` would let it pass as a real radiograph in a PACS or an AI pipeline that routes by modality
(``modality="DX"`` can still be asked for). :func:`check_dicom_synthetic` lists what is missing or identifying in a
file, so a written set can be checked before it leaves the machine.
"""

from __future__ import annotations

from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from bundle.inference.formats.common import SYNTHETIC_NOTE, prepare_path, quantize

__all__ = [
    "SECONDARY_CAPTURE_IMAGE_STORAGE",
    "SYNTHETIC_PATIENT_NAME",
    "write_dicom",
    "check_dicom_synthetic",
]

#: SOP Class UID of Secondary Capture Image Storage.
SECONDARY_CAPTURE_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.7"
SYNTHETIC_PATIENT_NAME = "SYNTHETIC^EMIXER"

# fmt: off
#: Attributes that identify a person or a site: a synthetic object leaves them absent or empty.
_IDENTITY_ATTRIBUTES: tuple[str, ...] = (
    "PatientBirthDate", "PatientBirthTime", "PatientBirthName", "PatientMotherBirthName", "OtherPatientIDs",
    "OtherPatientNames", "OtherPatientIDsSequence", "PatientAddress", "PatientTelephoneNumbers",
    "MedicalRecordLocator", "EthnicGroup", "Occupation", "PatientReligiousPreference", "MilitaryRank",
    "BranchOfService", "PatientInsurancePlanCodeSequence", "InstitutionName", "InstitutionAddress",
    "InstitutionalDepartmentName", "StationName", "DeviceSerialNumber", "ReferringPhysicianName",
    "PerformingPhysicianName", "OperatorsName", "PhysiciansOfRecord", "NameOfPhysiciansReadingStudy",
    "RequestingPhysician", "AccessionNumber",
)
#: Type 1 attributes of the Secondary Capture IOD (and of this writer's synthetic statement).
_REQUIRED_ATTRIBUTES: tuple[str, ...] = (
    "SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "Modality", "ConversionType",
    "PatientName", "PatientID", "ImageType", "SamplesPerPixel", "PhotometricInterpretation", "Rows", "Columns",
    "BitsAllocated", "BitsStored", "HighBit", "PixelRepresentation", "PixelData", "BurnedInAnnotation",
    "PatientIdentityRemoved", "DeidentificationMethod",
)
#: Type 2 attributes: present, possibly empty.
_TYPE2_ATTRIBUTES: tuple[str, ...] = (
    "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
    "AccessionNumber", "SeriesNumber", "InstanceNumber", "PatientOrientation",
)
# fmt: on


def write_dicom(
    image: np.ndarray,
    path: str | PathLike,
    bit_depth: int = 8,
    study_uid: str | None = None,
    series_uid: str | None = None,
    patient_id: str = "SYN-000000",
    instance_number: int = 1,
    modality: str = "OT",
) -> Path:
    """Write ``image`` as a Secondary Capture DICOM of a synthetic image (see the module docs).

    ``patient_id`` must start with ``SYN``. The default ``SYN-000000`` is the same in every call: a caller writing a
    set passes ids unique across sets, as :meth:`bundle.inference.writer.PairedDatasetWriter.patient_id` does
    (``SYN-<run id>-<sample index>``, the run id derived from the run's settings), so that two synthetic sets do
    not share patients. ``study_uid`` / ``series_uid`` put several images in one study / series; fresh UIDs are made
    when None.
    The VOI window spans the whole stored range, so viewers and :func:`bundle.data.images.read_cxr` show the
    stored values unchanged.
    """
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian, generate_uid

    if not str(patient_id).upper().startswith("SYN"):
        raise ValueError(f"patient_id {patient_id!r} must be synthetic (start with 'SYN')")
    pixels = quantize(image, bit_depth)
    path = prepare_path(path)
    sop_uid = generate_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    now = datetime.now()
    date, time = now.strftime("%Y%m%d"), now.strftime("%H%M%S")

    # SOP common, general image, SC image
    ds.SOPClassUID = SECONDARY_CAPTURE_IMAGE_STORAGE
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate, ds.InstanceCreationTime = date, time
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.ContentDate, ds.ContentTime = date, time
    ds.DerivationDescription = SYNTHETIC_NOTE
    ds.ImageComments = SYNTHETIC_NOTE
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.PatientOrientation = ""  # type 2: a generated image makes no claim about patient directions
    # patient: synthetic identity, nothing that could point to a person
    ds.PatientName = SYNTHETIC_PATIENT_NAME
    ds.PatientID = str(patient_id)
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = "Synthetic image: generated by EMIXER-CXR, no patient data used"
    # study and series: the creation date only; empty type 2 attributes
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.StudyDate, ds.StudyTime = date, time
    ds.ReferringPhysicianName = ""
    ds.StudyID = ""
    ds.AccessionNumber = ""
    ds.StudyDescription = "Synthetic chest X-ray (EMIXER-CXR)"
    ds.Modality = modality
    ds.SeriesNumber = 1
    ds.SeriesDescription = "EMIXER-CXR synthetic images"
    ds.InstanceNumber = int(instance_number)
    ds.BodyPartExamined = "CHEST"
    # SC equipment
    ds.ConversionType = "SYN"
    ds.Manufacturer = "EMIXER-CXR"
    ds.SecondaryCaptureDeviceManufacturer = "EMIXER-CXR"
    ds.SecondaryCaptureDeviceManufacturerModelName = "EMIXER-CXR generator"
    # image pixel, modality LUT (identity) and VOI LUT (a window over the whole stored range)
    top = 2**bit_depth - 1
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated = bit_depth
    ds.BitsStored = bit_depth
    ds.HighBit = bit_depth - 1
    ds.PixelRepresentation = 0
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"
    ds.WindowCenter, ds.WindowWidth = (top + 1) / 2, top + 1  # DICOM linear window: identity on 0..top
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<"), copy=False).tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def _is_empty(value: Any) -> bool:
    return value is None or str(value).strip() == "" or (hasattr(value, "__len__") and len(value) == 0)


def check_dicom_synthetic(path: str | PathLike) -> list[str]:
    """Problems of a DICOM file as a synthetic Secondary Capture image: missing required attributes, a wrong
    SOP class or transfer syntax, invalid or repeated UIDs, and any patient identity with a real-looking value.
    An empty list means the file passes."""
    import pydicom
    from pydicom.uid import UID, ExplicitVRLittleEndian

    try:
        ds = pydicom.dcmread(path)
    except Exception as err:  # InvalidDicomError, truncated files...
        return [f"not a readable DICOM file: {type(err).__name__}: {err}"]
    problems: list[str] = []
    meta = getattr(ds, "file_meta", None)
    if meta is None or "TransferSyntaxUID" not in meta:
        problems.append("no file meta information (TransferSyntaxUID)")
    else:
        if meta.TransferSyntaxUID != ExplicitVRLittleEndian:
            problems.append(f"transfer syntax {meta.TransferSyntaxUID} is not explicit VR little endian")
        if meta.get("MediaStorageSOPClassUID") != ds.get("SOPClassUID"):
            problems.append("MediaStorageSOPClassUID differs from SOPClassUID")
        if meta.get("MediaStorageSOPInstanceUID") != ds.get("SOPInstanceUID"):
            problems.append("MediaStorageSOPInstanceUID differs from SOPInstanceUID")
    problems += [f"missing required attribute {name}" for name in _REQUIRED_ATTRIBUTES if _is_empty(ds.get(name))]
    problems += [f"missing type 2 attribute {name}" for name in _TYPE2_ATTRIBUTES if name not in ds]
    if ds.get("SOPClassUID") not in (None, SECONDARY_CAPTURE_IMAGE_STORAGE):
        problems.append(f"SOPClassUID {ds.SOPClassUID} is not Secondary Capture Image Storage")
    uids = {name: ds.get(name) for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    for name, uid in uids.items():
        if uid and not UID(str(uid)).is_valid:
            problems.append(f"{name} {uid!r} is not a valid UID")
    present = [str(uid) for uid in uids.values() if uid]
    if len(set(present)) != len(present):
        problems.append("StudyInstanceUID, SeriesInstanceUID and SOPInstanceUID are not distinct")
    expected = {
        "ConversionType": "SYN",
        "BurnedInAnnotation": "NO",
        "PatientIdentityRemoved": "YES",
        "PhotometricInterpretation": "MONOCHROME2",
    }
    for name, value in expected.items():
        if name in ds and str(ds.get(name)).strip().upper() != value:
            problems.append(f"{name} is {ds.get(name)!r}, expected {value!r}")
    if "ImageType" in ds and [str(v).upper() for v in list(ds.ImageType)[:2]] != ["DERIVED", "SECONDARY"]:
        problems.append(f"ImageType {list(ds.ImageType)} does not start with DERIVED\\SECONDARY")
    if all(name in ds for name in ("BitsAllocated", "BitsStored", "HighBit")):
        if ds.BitsAllocated not in (8, 16) or ds.BitsStored > ds.BitsAllocated or ds.HighBit != ds.BitsStored - 1:
            problems.append(
                f"inconsistent bits: allocated {ds.BitsAllocated}, stored {ds.BitsStored}, high bit {ds.HighBit}"
            )
    statement = f"{ds.get('ImageComments', '')} {ds.get('DerivationDescription', '')}".lower()
    if "synthetic" not in statement or "not a real patient" not in statement:
        problems.append("no statement that the image is synthetic (ImageComments / DerivationDescription)")
    name = str(ds.get("PatientName", "") or "")
    if name and not name.upper().startswith("SYNTHETIC"):
        problems.append(f"PatientName {name!r} looks like a real name (expected a SYNTHETIC^... value)")
    patient_id = str(ds.get("PatientID", "") or "")
    if patient_id and not patient_id.upper().startswith("SYN"):
        problems.append(f"PatientID {patient_id!r} looks like a real identifier (expected SYN-...)")
    for attribute in _IDENTITY_ATTRIBUTES:
        if attribute in ds and not _is_empty(ds.get(attribute)):
            problems.append(f"identity attribute {attribute} has a value ({str(ds.get(attribute))[:40]!r})")
    return problems
