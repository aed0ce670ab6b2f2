"""Hostile and damaged image files: size caps before decoding, windows outside the data, non-radiograph DICOM,
malformed DICOM values, truncated PNG / JPEG, and the file named by the error a user sees in training."""

from __future__ import annotations

import gzip
import io
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from monai.data import DataLoader, Dataset
from monai.transforms import Compose
from PIL import Image, ImageFile

from bundle.data import images
from bundle.data.errors import DataError
from bundle.data.images import read_cxr
from bundle.transforms import LoadCXRImaged
from tests.test_transforms import write_dicom


def ramp(height: int = 64, width: int = 48) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return ((xx * 3 + yy * 2) % 256).astype(np.uint8)


def refused(path: Path, match: str, **kwargs: object) -> DataError:
    with pytest.raises(DataError, match=match) as err:
        read_cxr(path, **kwargs)
    assert err.value.path == str(path)
    return err.value


# ------------------------------------------------------------------------------------------- size caps


def test_png_and_jpeg_over_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    Image.fromarray(ramp()).save(tmp_path / "a.png")
    Image.fromarray(ramp()).save(tmp_path / "a.jpg")
    for name in ("a.png", "a.jpg"):
        refused(tmp_path / name, r"image too large: 48 x 64 x 1 band\(s\) \(L\) declares 3072 bytes", max_bytes=3000)
        assert read_cxr(tmp_path / name, max_bytes=3072)[0].shape == (64, 48)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 1000)  # the module constant is the default
    refused(tmp_path / "a.png", "over the 1000 byte size cap")


def test_nifti_refused_from_its_header_before_reading_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from monai.data import NibabelReader

    data = np.random.default_rng(0).random((64, 48)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "a.nii.gz")
    nib.save(nib.Nifti2Image(data, np.eye(4)), tmp_path / "b.nii")

    def no_data(*args: object, **kwargs: object) -> None:
        raise AssertionError("voxel data read before the size check")

    monkeypatch.setattr(NibabelReader, "get_data", no_data)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 4096)
    for name in ("a.nii.gz", "b.nii"):
        error = refused(tmp_path / name, r"image too large: NIfTI shape 64 x 48 .* declares \d+ bytes")
        assert "4096 byte size cap" in error.problem


def test_nifti_gzip_bomb(tmp_path: Path) -> None:
    """A header declaring 30000 x 30000 float64 (7.2 GB) over a few kilobytes of gzip: refused at once."""
    header = nib.Nifti1Header()
    header.set_data_shape((30000, 30000))
    header.set_data_dtype(np.float64)
    raw = header.binaryblock + b"\0" * 4 + bytes(1 << 16)
    path = tmp_path / "bomb.nii.gz"
    path.write_bytes(gzip.compress(raw))
    refused(path, r"NIfTI shape 30000 x 30000 .* declares 7200000(000|352) bytes")


def test_dicom_declared_size_and_deflate_bomb(tmp_path: Path) -> None:
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    path = write_dicom(tmp_path / "a.dcm", (ramp().astype(np.uint16) * 16), 12)
    refused(
        path, r"image too large: 64 x 48 x 1 frame\(s\) x 1 sample\(s\) x 16 bits declares 6144 bytes", max_bytes=6000
    )
    assert read_cxr(path, max_bytes=6144)[0].shape == (64, 48)
    big = np.zeros((2048, 2048), np.uint16)
    big[0, 0] = 1
    bomb = write_dicom(tmp_path / "bomb.dcm", big, 12)
    ds = pydicom.dcmread(bomb)
    ds.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
    ds.save_as(bomb, enforce_file_format=True)
    assert bomb.stat().st_size < 100_000  # 8 MiB of pixels in a few kilobytes
    refused(bomb, "deflated DICOM data set inflates beyond the 1000000 byte size cap", max_bytes=1_000_000)


# -------------------------------------------------------------------------- windows outside the data


def test_nifti_display_range_outside_the_data(tmp_path: Path) -> None:
    image = nib.Nifti1Image(ramp().T.astype(np.float32), np.eye(4))  # values 0 ... 255
    image.header["cal_min"], image.header["cal_max"] = 1000.0, 2000.0
    nib.save(image, tmp_path / "a.nii")
    refused(tmp_path / "a.nii", r"NIfTI display range \(cal_min 1000, cal_max 2000\) lies outside the data.*black")


def test_dicom_window_outside_the_data(tmp_path: Path) -> None:
    stored = ramp().astype(np.uint16) * 16  # 0 ... 4080
    path = write_dicom(tmp_path / "w.dcm", stored, 12, window=(40000, 100))
    refused(
        path, r"DICOM the window \(center 40000.*width 100.*\) lies outside the data: every displayed pixel is black"
    )
    path = write_dicom(tmp_path / "m1.dcm", stored, 12, "MONOCHROME1", window=(-5000, 100))
    refused(path, "lies outside the data: every displayed pixel is white")
    assert read_cxr(path, voi_lut=False)[0].std() > 0  # without the window it is a picture


# --------------------------------------------------------------------------- DICOM that is no radiograph


def test_palette_color_and_non_image_dicom(tmp_path: Path) -> None:
    stored = ramp().astype(np.uint16)
    palette = write_dicom(tmp_path / "palette.dcm", stored, 8, photometric="PALETTE COLOR")
    refused(palette, "PALETTE COLOR DICOM")
    dose = write_dicom(tmp_path / "dose.dcm", stored, 16)
    ds = pydicom.dcmread(dose)
    ds.Modality = "RTDOSE"
    ds.save_as(dose)
    refused(dose, r"non-image DICOM \(modality RTDOSE\)")
    no_pi = write_dicom(tmp_path / "nopi.dcm", stored, 16)
    ds = pydicom.dcmread(no_pi)
    del ds.PhotometricInterpretation
    ds.save_as(no_pi)
    refused(no_pi, "without Photometric Interpretation")


@pytest.mark.parametrize("width", [0, -5])
def test_dicom_window_width_not_positive(tmp_path: Path, width: int) -> None:
    path = write_dicom(tmp_path / "w.dcm", ramp().astype(np.uint16) * 16, 12, window=(2000, width))
    refused(path, rf"unusable DICOM window \(center 2000.*, width {width}.*\)")


@pytest.mark.parametrize("frames", ["abc", "-2", "1.5"])
def test_dicom_malformed_number_of_frames(tmp_path: Path, frames: str) -> None:
    path = write_dicom(tmp_path / "f.dcm", ramp().astype(np.uint16) * 16, 12)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = "9"
    ds.save_as(path)
    data = path.read_bytes().replace(b"IS\x02\x009 ", b"IS" + struct.pack("<H", 4) + frames.ljust(4).encode())
    path.write_bytes(data)
    refused(path, f"malformed DICOM Number of Frames '{frames}'")


# --------------------------------------------------------------------------------- truncated PNG / JPEG


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_truncated_jpeg_with_end_marker_appended(tmp_path: Path, progressive: bool, mode: str) -> None:
    buffer = io.BytesIO()
    Image.fromarray(ramp(256, 200)).convert(mode).save(buffer, "JPEG", quality=90, progressive=progressive)
    data = buffer.getvalue()
    (tmp_path / "full.jpg").write_bytes(data)
    assert read_cxr(tmp_path / "full.jpg")[0].shape == (256, 200)
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2] + b"\xff\xd9")
    refused(bad, "truncated JPEG image")


def test_truncated_png_stream_with_lenient_pillow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Well-formed chunks around a cut zlib stream: refused even when Pillow is told to load truncated files."""
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)).save(buffer, "PNG")
    data = buffer.getvalue()
    start = data.find(b"IDAT") - 4
    length = struct.unpack(">I", data[start : start + 4])[0]
    payload = data[start + 8 : start + 8 + length // 2]
    chunk = struct.pack(">I", len(payload)) + b"IDAT" + payload + struct.pack(">I", zlib.crc32(b"IDAT" + payload))
    bad = tmp_path / "cut.png"
    bad.write_bytes(data[:start] + chunk + data[start + 12 + length :])
    for lenient in (False, True):
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
        refused(bad, "truncated")


# ------------------------------------------------------------------------------- errors inside transforms


@pytest.mark.parametrize("workers", [0, 1])
def test_training_transform_error_names_the_file(tmp_path: Path, workers: int) -> None:
    """MONAI wraps a transform's error as RuntimeError("applying transform ..."): that line names the file."""
    path = write_dicom(tmp_path / "w.dcm", ramp().astype(np.uint16) * 16, 12, window=(2000, 0))
    dataset = Dataset([{"image": str(path)}], transform=Compose([LoadCXRImaged(keys="image")]))
    with pytest.raises(RuntimeError) as err:
        next(iter(DataLoader(dataset, num_workers=workers)))
    last_line = str(err.value).strip().splitlines()[-1]
    assert str(path) in last_line and "unusable DICOM window" in last_line
