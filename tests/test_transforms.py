"""CXR image loading (PNG / JPEG / DICOM / NIfTI), report tokenisation, and the data part of configs/train.json."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser
from monai.data import MetaTensor
from PIL import Image, ImageFile

from bundle.data.errors import DataError
from bundle.data.tokenizer import END, PAD, ReportTokenizer
from bundle.data.images import read_cxr
from bundle.transforms import LoadCXRImaged, TokenizeReportd

REPO_ROOT = Path(__file__).resolve().parents[1]
TRAIN_CONFIG = REPO_ROOT / "configs" / "train.json"


def pattern(height: int = 24, width: int = 40) -> np.ndarray:
    """An 8-bit test image that is neither left-right nor top-bottom symmetric (nor transposable)."""
    image = np.zeros((height, width), dtype=np.uint8)
    image[2:8, 3:12] = 255  # bright block top left
    image[14:22, width - 6 : width - 2] = 128  # grey bar bottom right
    image[:, width // 2] = 60  # a vertical line
    return image


def load(path: Path) -> MetaTensor:
    return LoadCXRImaged(keys="image")({"image": str(path)})["image"]


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    bits_stored: int,
    photometric: str = "MONOCHROME2",
    rescale: tuple[float, float] | None = None,
    window: tuple[float, float] | None = None,
    pixel_data: bool = True,
) -> Path:
    """A DX For Presentation DICOM with the given stored pixels, written with pydicom."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import DigitalXRayImageStorageForPresentation, ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "DX"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = pixels.dtype.itemsize * 8, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(np.issubdtype(pixels.dtype, np.signedinteger))
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if pixel_data:
        ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


# ----------------------------------------------------------------------------------------------- PNG / JPEG


def test_png_8bit(tmp_path: Path) -> None:
    image = pattern()
    Image.fromarray(image).save(tmp_path / "a.png")
    out = load(tmp_path / "a.png")
    assert isinstance(out, MetaTensor) and out.dtype == torch.float32 and out.shape == (1, 24, 40)
    assert out.meta["filename_or_obj"] == str(tmp_path / "a.png")
    np.testing.assert_allclose(out[0].numpy(), image / 255.0, atol=1e-6)


def test_jpeg_8bit_and_rgb(tmp_path: Path) -> None:
    yy, xx = np.mgrid[0:32, 0:48]
    image = (40 + 3 * xx + 2 * yy).astype(np.uint8)  # smooth, so JPEG keeps it closely
    Image.fromarray(image).save(tmp_path / "a.jpg", quality=95)
    Image.fromarray(np.stack([image] * 3, -1)).save(tmp_path / "rgb.jpeg", quality=95)
    for name in ("a.jpg", "rgb.jpeg"):
        out = load(tmp_path / name)
        assert out.shape == (1, 32, 48)
        assert np.abs(out[0].numpy() - image / 255.0).max() < 0.03


def test_png_16bit_keeps_precision(tmp_path: Path) -> None:
    image = (np.arange(32 * 32, dtype=np.uint32).reshape(32, 32) * 64 + 1).astype(np.uint16)  # 1 ... 65473
    Image.fromarray(image).save(tmp_path / "a.png")
    with Image.open(tmp_path / "a.png") as check:
        assert check.mode.startswith("I")  # really a 16-bit PNG
    out = load(tmp_path / "a.png")[0].numpy()
    np.testing.assert_allclose(out, image / 65535.0, atol=1e-6)
    assert len(np.unique(out)) == image.size  # finer than 8-bit steps survive


def test_truncated_png_and_jpeg_raise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 48), dtype=np.uint8)
    for name in ("full.png", "full.jpg"):
        Image.fromarray(image).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        for cut in (len(data) // 2, len(data) - 2):
            bad = tmp_path / f"cut{cut}_{name}"
            bad.write_bytes(data[:cut])
            for lenient in (False, True):  # PIL's global switch must not make a truncated file load
                monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", lenient)
                with pytest.raises(DataError, match="truncated") as err:
                    load(bad)
                assert err.value.path == str(bad)
        monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", False)
        assert load(tmp_path / name).shape == (1, 48, 48)


def test_bad_files_raise_naming_the_file(tmp_path: Path) -> None:
    cases = {
        tmp_path / "missing.png": "missing image file",
        tmp_path / "scan.bmp": "unsupported image format .bmp",
        tmp_path / "noise.png": "corrupt or truncated image",
        tmp_path / "blank.png": "constant image",
        tmp_path / "noise.nii.gz": "corrupt or unreadable NIfTI",
        tmp_path / "noise.dcm": "not a DICOM file",
    }
    (tmp_path / "noise.dcm").write_bytes(bytes(300))
    (tmp_path / "scan.bmp").write_bytes(b"BM" + bytes(64))
    (tmp_path / "noise.png").write_bytes(bytes(range(256)) * 4)
    Image.fromarray(np.full((16, 16), 7, np.uint8)).save(tmp_path / "blank.png")
    (tmp_path / "noise.nii.gz").write_bytes(b"\x1f\x8b" + bytes(100))
    for path, problem in cases.items():
        with pytest.raises(DataError, match=problem) as err:
            load(path)
        assert err.value.path == str(path)


# ---------------------------------------------------------------------------------------------------- DICOM


def test_dicom_16bit_rescale_and_window(tmp_path: Path) -> None:
    stored = np.linspace(0, 4000, 24 * 32).reshape(24, 32).astype(np.uint16)
    slope, intercept, center, width = 2.0, -1000.0, 3000.0, 4001.0
    path = write_dicom(tmp_path / "a.dcm", stored, 16, rescale=(slope, intercept), window=(center, width))
    out = load(path)
    assert out.shape == (1, 24, 32) and out.dtype == torch.float32
    # DICOM PS3.3 C.11.2.1.2.1 (LINEAR window) on the rescaled values, mapped to [0, 1]
    values = stored * slope + intercept
    expected = np.clip((values - (center - 0.5)) / (width - 1) + 0.5, 0, 1)
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-5)
    assert (expected == 0).any() and (expected == 1).any() and ((expected > 0) & (expected < 1)).any()
    # without the window: the range the 16 stored bits allow, through the rescale
    plain = read_cxr(path, voi_lut=False)[0]
    np.testing.assert_allclose(plain, (values - intercept) / (65535 * slope), atol=1e-6)


@pytest.mark.parametrize("bits, dtype", [(8, np.uint8), (12, np.uint16), (16, np.uint16), (16, np.int16)])
def test_dicom_scaled_by_bits_stored(tmp_path: Path, bits: int, dtype: type) -> None:
    info = np.iinfo(dtype)
    low, high = (info.min, info.max) if bits == info.bits else (0, 2**bits - 1)
    stored = np.linspace(low, high, 16 * 20).reshape(16, 20).round().astype(dtype)
    out = load(write_dicom(tmp_path / f"b{bits}.dcm", stored, bits))[0].numpy()
    np.testing.assert_allclose(out, (stored.astype(np.float64) - low) / (high - low), atol=1e-6)
    assert out.min() == 0.0 and out.max() == 1.0  # a 12-bit image is not stuck in the bottom 1/16 of the range


def test_dicom_monochrome1_is_inverted(tmp_path: Path) -> None:
    stored = np.zeros((16, 16), dtype=np.uint16)
    stored[4:8, 4:8] = 4000  # high stored value: bright in MONOCHROME2, dark in MONOCHROME1
    stored[10:14, 10:14] = 500
    m2 = load(write_dicom(tmp_path / "m2.dcm", stored, 12))[0].numpy()
    m1 = load(write_dicom(tmp_path / "m1.dcm", stored, 12, photometric="MONOCHROME1"))[0].numpy()
    assert m2[5, 5] > m2[12, 12] > m2[0, 0]
    assert m1[5, 5] < m1[12, 12] < m1[0, 0]
    np.testing.assert_allclose(m1, 1.0 - m2, atol=1e-6)
    windowed = load(write_dicom(tmp_path / "w1.dcm", stored, 12, "MONOCHROME1", window=(2000, 4000)))[0].numpy()
    assert windowed[5, 5] < windowed[12, 12] < windowed[0, 0]


def test_dicom_voi_lut_sequence(tmp_path: Path) -> None:
    from pydicom import dcmread
    from pydicom.dataset import Dataset

    stored = (np.arange(16 * 16).reshape(16, 16) * 12).astype(np.uint16)  # 0 ... 3060
    path = write_dicom(tmp_path / "lut.dcm", stored, 12, window=(100, 50))  # the LUT wins over the window
    ds = dcmread(path)
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [2048, 0, 12])
    item.add_new("LUTData", "US", [min(4095, 3 * i) for i in range(2048)])
    ds.VOILUTSequence = [item]
    ds.save_as(path)
    out = load(path)[0].numpy()
    np.testing.assert_allclose(out, np.minimum(4095, 3 * np.minimum(stored, 2047)) / 4095, atol=1e-6)


def test_dicom_without_pixel_data(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "empty.dcm", np.zeros((8, 8), np.uint16), 12, pixel_data=False)
    with pytest.raises(DataError, match="DICOM without pixel data") as err:
        load(path)
    assert err.value.path == str(path)


def test_dicom_without_extension_is_recognised(tmp_path: Path) -> None:
    stored = pattern().astype(np.uint16)
    path = write_dicom(tmp_path / "IM0001", stored, 8)
    np.testing.assert_allclose(load(path)[0].numpy(), stored / 255.0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------- NIfTI


def test_nifti_orientation_matches_png(tmp_path: Path) -> None:
    image = pattern()
    Image.fromarray(image).save(tmp_path / "a.png")
    reference = load(tmp_path / "a.png")[0].numpy()
    # voxel axis 0 = columns, axis 1 = rows (MONAI / ITK 2D convention); also with a singleton third axis
    nib.save(nib.Nifti1Image(image.T.astype(np.int16), np.eye(4)), tmp_path / "a2d.nii")
    nib.save(nib.Nifti1Image(image.T[:, :, None].astype(np.float32), np.eye(4)), tmp_path / "a3d.nii.gz")
    nib.save(nib.Nifti1Image(image.T[:, None, :].astype(np.float32), np.eye(4)), tmp_path / "coronal.nii.gz")
    for name in ("a2d.nii", "a3d.nii.gz", "coronal.nii.gz"):
        out = load(tmp_path / name)
        assert out.shape == (1, 24, 40), name
        np.testing.assert_allclose(out[0].numpy(), reference, atol=1e-6, err_msg=name)


def test_nifti_written_by_monai_loads_like_its_png(tmp_path: Path) -> None:
    from monai.transforms import LoadImage, SaveImage

    image = pattern()
    Image.fromarray(image).save(tmp_path / "a.png")
    monai_image = LoadImage(image_only=True, ensure_channel_first=True)(str(tmp_path / "a.png"))
    SaveImage(
        output_dir=str(tmp_path / "out"),
        output_postfix="",
        output_ext=".nii.gz",
        separate_folder=False,
        output_dtype=np.float32,
        print_log=False,
    )(monai_image)
    np.testing.assert_allclose(load(tmp_path / "out" / "a.nii.gz").numpy(), load(tmp_path / "a.png").numpy(), atol=1e-6)


def test_nifti_with_two_long_axes_only(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Image(np.random.rand(8, 8, 3).astype(np.float32), np.eye(4)), tmp_path / "vol.nii.gz")
    with pytest.raises(DataError, match="singleton axis") as err:
        load(tmp_path / "vol.nii.gz")
    assert err.value.path == str(tmp_path / "vol.nii.gz")


# ------------------------------------------------------------------------------------------------- reports


@pytest.fixture(scope="module")
def tokenizer() -> ReportTokenizer:
    return ReportTokenizer.train(["Heart size is normal. Lungs are clear. No effusion."] * 2, min_count=1)


def test_tokenize_reportd(tokenizer: ReportTokenizer, tmp_path: Path) -> None:
    tokenizer.save(tmp_path / "tokenizer.json")
    text = "Heart size is normal. Lungs are clear."
    for source in (tokenizer, str(tmp_path / "tokenizer.json")):
        out = TokenizeReportd(keys="report", tokenizer=source, max_sentences=3, max_words=5)({"report": text})
        assert out["report"] == text
        tokens, count = out["report_tokens"], out["report_num_sentences"]
        assert tokens.dtype == torch.long and tokens.shape == (3, 5)
        assert count.dtype == torch.long and count.ndim == 0 and int(count) == 2
        assert tokens[0, 4] == END and tokens[1, 3] == END and (tokens[2] == PAD).all()
        assert tokenizer.decode(tokens) == "heart size is normal. lungs are clear."
    named = TokenizeReportd("findings", tokenizer, tokens_postfix="_ids", num_sentences_postfix="_n")
    named = named({"findings": text})
    assert set(named) == {"findings", "findings_ids", "findings_n"}
    with pytest.raises(DataError, match="not text"):
        TokenizeReportd(tokenizer=tokenizer)({"report": None, "image": "x.png"})
    with pytest.raises(DataError, match="missing tokenizer file"):
        TokenizeReportd(tokenizer=str(tmp_path / "none.json"))


# -------------------------------------------------------------------------------------------------- config


def _config(dataset_dir: Path, **overrides: object) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(TRAIN_CONFIG))
    parser["dataset_dir"] = str(dataset_dir)
    for key, value in overrides.items():
        parser[key] = value
    return parser


def _write_dataset(root: Path, shapes: list[tuple[int, int]]) -> None:
    (root / "images").mkdir(parents=True)
    reports = [
        "Heart size is normal. Lungs are clear.",
        "Small left pleural effusion. Heart size is normal.",
        "No pneumothorax. Lungs are clear. Heart size is normal.",
    ]
    items = []
    for i, shape in enumerate(shapes):  # a PNG, a windowed DICOM, a NIfTI, a PNG, ...: one batch mixes formats
        image = np.roll(pattern(*shape), 3 * i, axis=1)
        name = f"images/{i}" + (".png", ".dcm", ".nii.gz")[i % 3]
        if name.endswith(".png"):
            Image.fromarray(image).save(root / name)
        elif name.endswith(".dcm"):
            write_dicom(root / name, image.astype(np.uint16) * 16, 12, window=(2048, 4096))
        else:
            nib.save(nib.Nifti1Image(image.T.astype(np.float32), np.eye(4)), root / name)
        labels = [0.0] * 7
        labels[i % 7] = 1.0
        items.append(
            {"image": name, "report": reports[i % 3], "labels": labels, "subject": str(i), "study": str(100 + i)}
        )
    datalist = {
        "class_names": [
            "No Finding",
            "Cardiomegaly",
            "Pleural Effusion",
            "Pneumothorax",
            "Consolidation",
            "Edema",
            "Support Devices",
        ],
        "training": items,
        "validation": items[:1],
        "test": [],
    }
    (root / "datalist.json").write_text(json.dumps(datalist))
    ReportTokenizer.train(reports, min_count=1).save(root / "tokenizer.json")


def test_config_preprocessing_and_dataloader(tmp_path: Path) -> None:
    _write_dataset(tmp_path, [(40, 48), (48, 40), (32, 32)])
    parser = _config(tmp_path, num_workers=0, batch_size=3)
    assert parser.get_parsed_content("num_classes") == 7
    item = parser.get_parsed_content("train_datalist")[0]
    assert item["image"] == str(tmp_path / "images" / "0.png")
    out = parser.get_parsed_content("train#preprocessing")(item)
    assert out["image"].shape == (3, 128, 128) and out["image"].dtype == torch.float32
    assert out["image"].min() >= -1 and out["image"].max() <= 1 and out["image"].max() > 0.9
    assert out["image"][:, 0].max() == -1  # the 40x48 image is padded top and bottom with black
    assert out["report_tokens"].shape == (8, 24) and out["report_tokens"].dtype == torch.long
    assert int(out["report_num_sentences"]) == 2
    assert out["labels"].dtype == torch.float32 and out["labels"].tolist() == item["labels"]
    batch = next(iter(parser.get_parsed_content("train#dataloader")))
    assert batch["image"].shape == (3, 3, 128, 128)
    assert batch["report_tokens"].shape == (3, 8, 24) and batch["report_num_sentences"].shape == (3,)
    assert batch["labels"].shape == (3, 7) and batch["labels"].dtype == torch.float32
    assert sorted(batch["report_num_sentences"].tolist()) == [2, 2, 3]
    val = next(iter(parser.get_parsed_content("validate#dataloader")))
    assert val["image"].shape == (1, 3, 128, 128)


def test_config_resize_preserves_aspect(tmp_path: Path) -> None:
    image = np.zeros((40, 64), dtype=np.uint8)
    image[10:30, 30:50] = 255  # a 20 x 20 bright square in a wide image
    Image.fromarray(image).save(tmp_path / "wide.png")
    _write_dataset(tmp_path / "data", [(32, 32)])
    parser = _config(tmp_path / "data", image_size=32, image_channels=1)
    transforms = parser.get_parsed_content("train#preprocessing")
    out = transforms({"image": str(tmp_path / "wide.png"), "report": "Lungs are clear.", "labels": [0.0] * 7})["image"]
    assert out.shape == (1, 32, 32)
    bright = (out[0] > 0).numpy()
    rows, cols = np.nonzero(bright.any(1))[0], np.nonzero(bright.any(0))[0]
    height, width = rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1
    assert height == width == 10  # 20 px square scaled by 32 / 64 stays square
    assert not bright[:6].any() and not bright[-6:].any()  # 40 * 0.5 = 20 rows of image, 6 rows of pad each side
    assert (out[0, :6] == -1).all()
