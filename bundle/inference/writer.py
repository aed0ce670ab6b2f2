"""The resumable paired dataset writer: generated image-report pairs with their labels, laid out as a dataset the
project reads back.

:class:`PairedDatasetWriter` lays a generated set out as ``images/syn_000000.<ext>``, ``reports/syn_000000.txt``,
an append-only ``progress.jsonl`` (so that an interrupted run resumes; its first line records the run's settings,
and a resume with other settings is refused), and at the end ``manifest.csv`` (readable by
:func:`bundle.data.sources.read_table`, so ``scripts/prepare_data.py --source csv`` takes it as a training source;
text cells a spreadsheet would run as formulas are escaped with a leading ``'``, which ``read_table`` undoes),
``datalist.json`` (the project's datalist format) and ``index.html`` (:mod:`bundle.inference.contact_sheet`).
Image files come from :mod:`bundle.inference.formats`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from bundle.data.errors import DataError
from bundle.data.labels import check_class_names, to_multi_hot
from bundle.data.sources.table import FORMULA_ESCAPE_COLUMN, formula_like
from bundle.inference.contact_sheet import write_contact_sheet
from bundle.inference.disk import check_free_disk, estimate_bytes_per_sample
from bundle.inference.formats import IMAGE_WRITERS, OUTPUT_FORMATS, normalise_format, write_dicom, write_report

logger = logging.getLogger(__name__)

__all__ = ["PairedDatasetWriter", "escape_formula_cell"]


def _to_numpy(data: Any) -> np.ndarray:
    """Tensors (torch, MONAI) and sequences as numpy arrays, keeping their dtype."""
    if hasattr(data, "detach"):
        data = data.detach().cpu()
        data = (data.float() if data.is_floating_point() else data).numpy()  # bfloat16 has no numpy dtype
    return np.asarray(data)


def _to_list(data: Any) -> list:
    return list(data) if isinstance(data, (list, tuple)) else _to_numpy(data).reshape(-1).tolist()


_MISSING = object()


def _json_value(value: Any) -> Any:
    """``value`` as JSON would give it back (tuples as lists, keys as strings), so that settings compare equal to
    the recorded ones."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _show_setting(settings: Mapping[str, Any], key: str) -> str:
    return json.dumps(settings[key]) if key in settings else "(not recorded)"


def escape_formula_cell(value: Any) -> Any:
    """A manifest cell made safe to open in a spreadsheet: text that would run as a formula (starting with ``=``,
    ``+``, ``-``, ``@``, a tab or a carriage return, possibly after ``'``) gets a leading ``'``, which spreadsheets
    show as text; numbers are written as they are. :func:`bundle.data.sources.table.read_table` undoes it on rows
    marked in ``formula_escaped``."""
    return "'" + value if isinstance(value, str) and formula_like(value) else value


def _is_settings_line(record: Mapping[str, Any]) -> bool:
    """Whether a ``progress.jsonl`` record is the settings line rather than a sample."""
    return "run_settings" in record and "sample_index" not in record


_IMAGE_NAME = re.compile(r"syn_\d{6,}(?:" + "|".join(re.escape(e) for e in OUTPUT_FORMATS.values()) + ")")
_REPORT_NAME = re.compile(r"syn_\d{6,}\.txt")


class PairedDatasetWriter:
    """Writes generated image-report pairs with their labels as a dataset the project can read back.

    Args:
        out_dir: output folder; must be empty (or missing) unless ``overwrite`` or ``resume``.
        class_names: CheXpert names of the conditioning label vector's entries, in order.
        output_format: ``png``, ``nifti`` (``.nii.gz``) or ``dicom``.
        bit_depth: 8 or 16 bits per pixel.
        overwrite: remove this writer's files from ``out_dir`` first (images/syn_*, reports/syn_*, progress.jsonl,
            manifest.csv, datalist.json, index.html); other files are left alone.
        resume: continue an interrupted run: ``done`` holds the sample indices already in ``progress.jsonl``.
        labeler: report text -> CheXpert label record; default :func:`bundle.data.labeler.label_report`.
        sections: the report sections the generated text stands for (the training datalist's ``sections``).
        modality: DICOM Modality (``OT`` by default, see :mod:`bundle.inference.formats.dicom`).
        max_index_rows: ``index.html`` shows at most this many samples.
        report_source: what the reports were written from (``"image"`` or ``"labels"``, see
            :class:`bundle.inference.sampler.EMIXERSampler`); stored at the top of ``datalist.json`` so an evaluation
            can say which reports it scores. None: not recorded.
        run_settings: the rest of what decides the samples (configs/inference.json passes seed, labels, num_samples,
            truncation, use_ema and the checkpoint's SHA-256); JSON values. Together with ``class_names``,
            ``output_format``, ``bit_depth`` and ``report_source`` they are the run's settings (:attr:`settings`),
            recorded as the first line of ``progress.jsonl``; a resume whose settings differ is refused with a
            :class:`DataError` naming the folder and each differing setting, before anything is written. They also
            give the run's id (:attr:`run_id`), the prefix of generated patient ids.

    ``write_batch`` appends one JSON line per sample to ``progress.jsonl`` (flushed and fsynced per batch) after
    its files are written, so that file is the record of what is complete; the first batch's write starts with the
    settings line ``{"run_settings": {...}, "run_id": "..."}``. ``finalize`` builds ``manifest.csv``,
    ``datalist.json`` and ``index.html`` from it.
    """

    PROGRESS, MANIFEST, DATALIST, INDEX = "progress.jsonl", "manifest.csv", "datalist.json", "index.html"
    IMAGES, REPORTS = "images", "reports"
    SOURCE = "emixer-synthetic"
    REPORT_LABEL_PREFIX = "report_label/"

    def __init__(
        self,
        out_dir: str | PathLike,
        class_names: Sequence[str],
        output_format: str = "png",
        bit_depth: int = 8,
        overwrite: bool = False,
        resume: bool = False,
        labeler: Callable[[str], Mapping[str, float | None]] | None = None,
        sections: Sequence[str] = ("findings", "impression"),
        modality: str = "OT",
        max_index_rows: int = 1000,
        report_source: str | None = None,
        run_settings: Mapping[str, Any] | None = None,
    ) -> None:
        if overwrite and resume:
            raise ValueError("pass overwrite=True or resume=True, not both")
        if bit_depth not in (8, 16):
            raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth!r}")
        self.out_dir = Path(out_dir)
        self.class_names = check_class_names(list(class_names), source="class_names")
        self.output_format = normalise_format(output_format)
        self.extension = OUTPUT_FORMATS[self.output_format]
        self.bit_depth = int(bit_depth)
        self.sections = [str(s).lower() for s in sections]
        self.modality = modality
        self.max_index_rows = int(max_index_rows)
        self.report_source = report_source
        if labeler is None:
            from bundle.data.labeler import label_report as labeler
        self.labeler = labeler
        self.done: set[int] = set()
        own = {
            "class_names": list(self.class_names),
            "output_format": self.output_format,
            "bit_depth": self.bit_depth,
            "report_source": report_source,
        }
        #: What decides this run's samples, as JSON values (recorded in ``progress.jsonl``, compared on resume).
        self.settings: dict[str, Any] = _json_value({**dict(run_settings or {}), **own})
        #: The run's id: 8 hex digits of the settings' SHA-256 when ``run_settings`` are given (the same settings
        #: give the same samples, and the same ids), else random; a resumed run keeps the recorded one.
        self.run_id = (
            hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode()).hexdigest()[:8]
            if run_settings is not None
            else uuid.uuid4().hex[:8]
        ).upper()
        self._settings_recorded = False

        if self.out_dir.exists() and not self.out_dir.is_dir():
            raise NotADirectoryError(f"{self.out_dir} exists and is not a folder")
        if self.out_dir.is_dir() and self._has_content():
            if overwrite:
                self._clear_own_files()
            elif resume:
                self._load_progress()
            else:
                raise FileExistsError(
                    f"output folder {self.out_dir} is not empty; pass overwrite=True to replace this writer's "
                    "files in it, or resume=True to continue an interrupted run there"
                )
        (self.out_dir / self.IMAGES).mkdir(parents=True, exist_ok=True)
        (self.out_dir / self.REPORTS).mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------ folder state
    @property
    def progress_path(self) -> Path:
        return self.out_dir / self.PROGRESS

    def _has_content(self) -> bool:
        """Whether ``out_dir`` holds anything but this writer's empty ``images/`` and ``reports/`` folders (which
        a writer that never wrote leaves behind)."""
        for entry in self.out_dir.iterdir():
            if not (entry.name in (self.IMAGES, self.REPORTS) and entry.is_dir() and not any(entry.iterdir())):
                return True
        return False

    def _clear_own_files(self) -> None:
        """Delete only what this writer creates."""
        for name in (self.PROGRESS, self.MANIFEST, self.DATALIST, self.INDEX):
            (self.out_dir / name).unlink(missing_ok=True)
        for folder, pattern in ((self.IMAGES, _IMAGE_NAME), (self.REPORTS, _REPORT_NAME)):
            folder_path = self.out_dir / folder
            if folder_path.is_dir():
                for entry in folder_path.iterdir():
                    if entry.is_file() and pattern.fullmatch(entry.name):
                        entry.unlink()

    def _foreign_entries(self) -> list[str]:
        """Entries of ``out_dir`` this writer did not create."""
        foreign = []
        for entry in self.out_dir.iterdir():
            if entry.name in (self.IMAGES, self.REPORTS) and entry.is_dir():
                pattern = _IMAGE_NAME if entry.name == self.IMAGES else _REPORT_NAME
                foreign += [f"{entry.name}/{e.name}" for e in entry.iterdir() if not pattern.fullmatch(e.name)]
            elif entry.name not in (self.PROGRESS, self.MANIFEST, self.DATALIST, self.INDEX):
                foreign.append(entry.name)
        return foreign

    def _read_progress_lines(self, repair: bool) -> list[dict]:
        """Records of ``progress.jsonl``; an incomplete last line (an interrupted write) is dropped, and cut
        from the file when ``repair``. A bad line before the last one is a :class:`DataError`."""
        path = self.progress_path
        if not path.is_file():
            return []
        data = path.read_bytes()
        records: list[dict] = []
        good_end = 0
        lines = data.split(b"\n")
        for n, line in enumerate(lines, 1):
            last = n == len(lines)
            if not line.strip():
                good_end += len(line) + (0 if last else 1)
                continue
            try:
                if last:  # no newline after it: the write was cut short
                    raise ValueError("incomplete line")
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as err:
                if n >= len(lines) - 1:
                    logger.warning("%s: dropping incomplete last line %d (%s)", path, n, err)
                    break
                raise DataError(path, f"bad JSON line: line {n}: {err}") from err
            records.append(record)
            good_end += len(line) + 1
        if repair and good_end < len(data):
            with path.open("r+b") as f:
                f.truncate(good_end)
                f.flush()
                os.fsync(f.fileno())
        return records

    def _check_settings(self, recorded: Mapping[str, Any] | None) -> None:
        """:class:`DataError` naming the folder and listing each setting (old -> new) that differs from the recorded
        ones; a progress file with samples but no settings line differs in every setting."""
        recorded = dict(recorded or {})
        differences = [
            f"{key}: {_show_setting(recorded, key)} -> {_show_setting(self.settings, key)}"
            for key in sorted(set(recorded) | set(self.settings))
            if recorded.get(key, _MISSING) != self.settings.get(key, _MISSING)
        ]
        if differences:
            raise DataError(
                self.out_dir,
                f"cannot resume: {self.PROGRESS} was written with other settings ({'; '.join(differences)}); "
                "resume with the recorded settings, choose another folder, or pass overwrite=True to start afresh",
            )

    def _load_progress(self) -> None:
        """Resume: read ``progress.jsonl`` into ``done`` after checking it was written with these settings."""
        if not self.progress_path.is_file():
            foreign = self._foreign_entries()
            if foreign:
                raise FileExistsError(
                    f"cannot resume in {self.out_dir}: it has no {self.PROGRESS} but holds other files "
                    f"({', '.join(foreign[:5])}); choose an empty folder or pass overwrite=True"
                )
            return
        lines = self._read_progress_lines(repair=True)
        header = next((r for r in lines if _is_settings_line(r)), None)
        samples = [r for r in lines if not _is_settings_line(r)]
        if header is not None or samples:
            self._check_settings(header["run_settings"] if header is not None else None)
        if header is not None:
            self.run_id = str(header.get("run_id") or self.run_id)
            self._settings_recorded = True
        for record in samples:
            missing = [name for name in self.class_names if name not in record]
            if missing or not str(record.get("image", "")).endswith(self.extension):
                raise ValueError(
                    f"cannot resume: {self.progress_path} was written with other settings (classes or format): "
                    f"sample {record.get('sample_index')} has image {record.get('image')!r}"
                    + (f" and lacks classes {missing}" if missing else "")
                    + f"; this writer has format {self.output_format} and classes {self.class_names}"
                )
            if (self.out_dir / record["image"]).is_file() and (self.out_dir / record["report_path"]).is_file():
                self.done.add(int(record["sample_index"]))

    def check_disk(self, num_samples: int, image_shape: Sequence[int]) -> int:
        """:func:`check_free_disk` for ``num_samples`` more samples of ``image_shape`` (``[..., H, W]``)."""
        per_sample = estimate_bytes_per_sample(self.output_format, self.bit_depth, image_shape)
        return check_free_disk(self.out_dir, num_samples, per_sample)

    # -------------------------------------------------------------------------------------------- writing
    def sample_id(self, sample_index: int) -> str:
        return f"syn_{int(sample_index):06d}"

    def patient_id(self, sample_index: int) -> str:
        """The DICOM PatientID of a sample: ``SYN-<run_id>-<index>`` (e.g. ``SYN-3F2A9C1E-000007``).

        Sample indices restart at 0 in every run, so the run's id (:attr:`run_id`, derived from its settings:
        seed, labels, checkpoint hash ...) is part of it: two synthetic sets merged in one archive keep distinct
        patients, while a rerun or resume with the same settings gives the same ids to the same samples.
        """
        return f"SYN-{self.run_id}-{int(sample_index):06d}"

    def _write_image(self, image: np.ndarray, path: Path, sample_index: int) -> None:
        if self.output_format == "dicom":
            write_dicom(
                image,
                path,
                self.bit_depth,
                patient_id=self.patient_id(sample_index),
                instance_number=1,
                modality=self.modality,
            )
        else:
            IMAGE_WRITERS[self.output_format](image, path, self.bit_depth)

    def write_batch(
        self,
        images: Any,
        reports: Sequence[str],
        labels: Any,
        seeds: Sequence[int] | Any,
        sample_indices: Sequence[int] | Any,
    ) -> list[dict]:
        """Write one batch: ``images`` ``[B, C, H, W]`` (or ``[B, H, W]``) in [0, 1] with C = 1 or 3 (equal
        channels, stored as one grey channel), ``reports`` B strings, ``labels`` the ``[B, k]`` conditioning
        multi-hot over ``class_names``, per-sample ``seeds`` and ``sample_indices``. Samples already ``done``
        are skipped. Returns the records written."""
        images = _to_numpy(images)
        labels = np.asarray(_to_numpy(labels), dtype=np.float64)
        seeds, indices = [int(s) for s in _to_list(seeds)], [int(i) for i in _to_list(sample_indices)]
        reports = list(reports)
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"images must be [B, C, H, W] with C = 1 or 3 (or [B, H, W]); got {images.shape}")
        size = images.shape[0]
        if labels.shape != (size, len(self.class_names)):
            raise ValueError(f"labels must be [B, {len(self.class_names)}] for {size} images; got {labels.shape}")
        if not len(reports) == len(seeds) == len(indices) == size:
            raise ValueError(
                f"batch sizes differ: {size} images, {len(reports)} reports, {len(seeds)} seeds, "
                f"{len(indices)} sample indices"
            )
        if len(set(indices)) != size:
            raise ValueError(f"repeated sample indices in a batch: {indices}")

        records = []
        for n, index in enumerate(indices):
            if index in self.done:
                logger.debug("sample %d already written; skipped", index)
                continue
            sample_id = self.sample_id(index)
            image_rel = f"{self.IMAGES}/{sample_id}{self.extension}"
            report_rel = f"{self.REPORTS}/{sample_id}.txt"
            try:
                self._write_image(images[n].mean(axis=0, dtype=np.float64), self.out_dir / image_rel, index)
            except ValueError as err:
                raise ValueError(f"sample {index}: {err}") from err
            report = " ".join(str(reports[n]).split())
            write_report(self.out_dir / report_rel, report)
            report_labels = to_multi_hot(self.labeler(report), self.class_names, uncertain="zeros")
            record: dict[str, Any] = {
                "id": sample_id,
                "image": image_rel,
                "report_path": report_rel,
                "report": report,
                "seed": seeds[n],
                "sample_index": index,
                "subject": sample_id,
                "study": sample_id,
            }
            record.update({name: float(v) for name, v in zip(self.class_names, labels[n])})
            record.update(
                {f"{self.REPORT_LABEL_PREFIX}{name}": float(v) for name, v in zip(self.class_names, report_labels)}
            )
            records.append(record)
        if records:
            lines = [] if self._settings_recorded else [{"run_settings": self.settings, "run_id": self.run_id}]
            with self.progress_path.open("a", encoding="utf-8") as f:
                f.write("".join(json.dumps(r) + "\n" for r in [*lines, *records]))
                f.flush()
                os.fsync(f.fileno())
            self._settings_recorded = True
            self.done.update(r["sample_index"] for r in records)
        return records

    # ------------------------------------------------------------------------------------------ finalizing
    def records(self) -> list[dict]:
        """The written samples from ``progress.jsonl``, one per sample index (the last write wins), in order."""
        lines = self._read_progress_lines(repair=False)
        by_index = {int(r["sample_index"]): r for r in lines if not _is_settings_line(r)}
        return [by_index[i] for i in sorted(by_index)]

    def _conditioning(self, record: Mapping[str, Any]) -> list[float]:
        return [float(record[name]) for name in self.class_names]

    def _report_labels(self, record: Mapping[str, Any]) -> list[float]:
        return [float(record[f"{self.REPORT_LABEL_PREFIX}{name}"]) for name in self.class_names]

    def finalize(self, metadata: Mapping[str, Any] | None = None) -> dict:
        """Write ``manifest.csv``, ``datalist.json`` and ``index.html`` from ``progress.jsonl``.

        ``metadata`` (e.g. the checkpoint and settings used) is stored under ``"generation"`` in the datalist.
        Returns a summary: sample count, file paths, per-class agreement of conditioning and report labels.
        """
        records = self.records()
        if not records:
            raise ValueError(f"nothing to finalize in {self.out_dir}: no samples were written")
        self._write_manifest(records)
        self._write_datalist(records, metadata)
        agreement = {
            name: round(float(np.mean([self._conditioning(r)[c] == self._report_labels(r)[c] for r in records])), 4)
            for c, name in enumerate(self.class_names)
        }
        self._write_index(records, agreement)
        return {
            "num_samples": len(records),
            "output_format": self.output_format,
            "bit_depth": self.bit_depth,
            "empty_reports": sum(1 for r in records if not r["report"].strip()),
            "label_agreement": agreement,
            "files": {
                key: str(self.out_dir / name)
                for key, name in (("manifest", self.MANIFEST), ("datalist", self.DATALIST), ("index", self.INDEX))
            },
        }

    def _write_manifest(self, records: list[dict]) -> None:
        columns = [
            "id",
            "image",
            "report_path",
            "report",
            "seed",
            "sample_index",
            "subject",
            "study",
            *self.class_names,
            *(f"{self.REPORT_LABEL_PREFIX}{name}" for name in self.class_names),
            FORMULA_ESCAPE_COLUMN,
        ]
        with (self.out_dir / self.MANIFEST).open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(
                {**{k: escape_formula_cell(v) for k, v in r.items()}, FORMULA_ESCAPE_COLUMN: 1} for r in records
            )

    def _write_datalist(self, records: list[dict], metadata: Mapping[str, Any] | None) -> None:
        items = [
            {
                "image": r["image"],
                "report": r["report"],
                "labels": self._conditioning(r),
                "subject": r["subject"],
                "study": r["study"],
                "id": r["id"],
                "report_path": r["report_path"],
                "seed": r["seed"],
                "sample_index": r["sample_index"],
                "report_labels": self._report_labels(r),
            }
            for r in records
        ]
        datalist = {
            "class_names": list(self.class_names),
            "source": self.SOURCE,
            "sections": list(self.sections),
            "output_format": self.output_format,
            "bit_depth": self.bit_depth,
            **({"report_source": self.report_source} if self.report_source is not None else {}),
            "run_id": self.run_id,
            "run_settings": self.settings,
            **({"generation": dict(metadata)} if metadata else {}),
            "training": items,
            "validation": [],
            "test": [],
        }
        (self.out_dir / self.DATALIST).write_text(json.dumps(datalist, indent=1), encoding="utf-8")

    def _write_index(self, records: list[dict], agreement: Mapping[str, float]) -> None:
        write_contact_sheet(
            self.out_dir / self.INDEX,
            records,
            self.class_names,
            self._conditioning,
            self._report_labels,
            agreement,
            self.output_format,
            self.bit_depth,
            self.max_index_rows,
        )
