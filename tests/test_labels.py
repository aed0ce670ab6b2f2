"""Label cells, class names and multi-hot conversion in the CheXpert / MIMIC convention."""

from __future__ import annotations

import math

import pytest

from bundle.data.errors import DataError, SkipCounter
from bundle.data.labels import CHEXPERT_CLASSES, DEFAULT_CLASSES, check_class_names, parse_label_value, to_multi_hot


@pytest.mark.parametrize(
    "cell, expected",
    [("1.0", 1.0), ("0", 0.0), ("-1.0", -1.0), ("", None), (math.nan, None), (None, None), (1, 1.0), (True, 1.0)],
)
def test_parse_label_value(cell, expected):
    assert parse_label_value(cell) == expected


@pytest.mark.parametrize("cell", ["2", "maybe", 0.5, -2])
def test_unknown_label_value_names_file_and_column(cell):
    with pytest.raises(DataError, match=r"labels\.csv: unknown label value .* in column 'Edema'"):
        parse_label_value(cell, source="labels.csv", column="Edema")


def test_check_class_names():
    assert check_class_names(DEFAULT_CLASSES) == list(DEFAULT_CLASSES)
    assert set(DEFAULT_CLASSES) <= set(CHEXPERT_CLASSES)
    with pytest.raises(DataError, match="unknown label.*Cardiomegally"):
        check_class_names(["Cardiomegally"], source="config")
    with pytest.raises(DataError, match="duplicate"):
        check_class_names(["Edema", "Edema"])


def test_to_multi_hot_uncertain_policies():
    classes = ["No Finding", "Cardiomegaly", "Edema", "Pneumothorax"]
    record = {"Cardiomegaly": 1.0, "Edema": -1.0, "Pneumothorax": 0.0}
    assert to_multi_hot(record, classes, "zeros") == [0.0, 1.0, 0.0, 0.0]
    assert to_multi_hot(record, classes, "ones") == [0.0, 1.0, 1.0, 0.0]
    assert to_multi_hot(record, classes, "ignore") == [0.0, 1.0, -1.0, 0.0]
    with pytest.raises(ValueError, match="uncertain policy"):
        to_multi_hot(record, classes, "maybe")


def test_no_finding_derived_only_when_absent():
    classes = ["No Finding", "Edema"]
    assert to_multi_hot({}, classes) == [1.0, 0.0]
    assert to_multi_hot({"Edema": 1.0}, classes) == [0.0, 1.0]
    assert to_multi_hot({"No Finding": 0.0}, classes) == [0.0, 0.0]  # explicit value wins


def test_skip_counter_raises_or_counts():
    error = DataError("a.jpg", "corrupt image: truncated")
    with pytest.raises(DataError, match="a.jpg: corrupt image"):
        SkipCounter(skip_bad=False).handle(error)
    counter = SkipCounter(skip_bad=True)
    counter.handle(error)
    counter.handle(DataError("b.jpg", "corrupt image: bad header"))
    counter.handle(DataError("c.txt", "empty report"))
    assert counter.total == 3
    assert counter.summary()["reasons"] == {"corrupt image": 2, "empty report": 1}


def test_skip_reasons_group_by_kind_not_detail():
    counter = SkipCounter(skip_bad=True)
    counter.handle(DataError("a.png", "truncated PNG image (file ends before its IEND chunk)"))
    counter.handle(DataError("b.txt", "missing report section: IMPRESSION (sections found: findings)"))
    counter.handle(DataError("c.txt", "missing report section: FINDINGS/IMPRESSION (sections found: none)"))
    assert counter.reasons == {"truncated PNG image": 1, "missing report section": 2}
