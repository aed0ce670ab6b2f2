"""Report text layer: MIMIC sections, cleaning, sentence splitting, IU X-ray XML, and every bad-input error."""

from __future__ import annotations

import itertools
import re

import pytest

from bundle.data.errors import DataError
from bundle.data.reports import (
    clean_report,
    extract_sections,
    iter_iu_reports_from_xrv,
    normalise_report_text,
    parse_iu_xml,
    read_report_file,
    select_sections,
    split_sentences,
    xrv_iu_reports_path,
)

MIMIC_REPORT = """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___ with cough, ? pneumonia

 TECHNIQUE:  Chest PA and lateral

 COMPARISON:  ___

 FINDINGS:

 There is a 1.5 cm nodule in the right upper lobe, approx. unchanged since ___.  The heart size is
 normal.  No pleural effusion or pneumothorax.

 IMPRESSION:

 1. Right upper lobe nodule
 2. No acute cardiopulmonary process.
"""

IU_XML = """<?xml version="1.0" encoding="utf-8"?>
<eCitation>
   <meta type="rr"/>
   <uId id="CXR7"/>
   <IUXRId id="7"/>
   <MedlineCitation><Article><Abstract>
      <AbstractText Label="COMPARISON">None.</AbstractText>
      <AbstractText Label="INDICATION">XXXX-year-old with cough</AbstractText>
      <AbstractText Label="FINDINGS">Mild cardiomegaly.   There are no XXXX of a pleural
         effusion.</AbstractText>
      <AbstractText Label="IMPRESSION">Cardiomegaly. Otherwise normal chest x-XXXX.</AbstractText>
   </Abstract></Article></MedlineCitation>
   <MeSH>
      <major>Cardiomegaly/mild</major>
      <minor>Something/minor</minor>
   </MeSH>
   <parentImage id="CXR7_1_IM-0009-1001"><caption>Xray Chest PA and Lateral</caption></parentImage>
   <parentImage id="CXR7_1_IM-0009-2001"><caption>Xray Chest PA and Lateral</caption></parentImage>
</eCitation>
"""


def test_mimic_report_sections():
    sections = extract_sections(MIMIC_REPORT)
    assert list(sections) == [
        "final report",
        "examination",
        "indication",
        "technique",
        "comparison",
        "findings",
        "impression",
    ]
    assert sections["examination"] == "CHEST (PA AND LAT)"
    assert sections["indication"] == "___ with cough, ? pneumonia"
    assert sections["findings"].startswith("There is a 1.5 cm nodule")
    assert sections["findings"].endswith("No pleural effusion or pneumothorax.")
    assert "2. No acute cardiopulmonary process." in sections["impression"]


def test_mimic_report_selected_and_cleaned():
    text = select_sections(extract_sections(MIMIC_REPORT))
    assert "___" not in text and "\n" not in text and "  " not in text
    assert "1.5 cm" in text  # decimals survive list-number removal
    assert "1." not in text.replace("1.5", "") and "2." not in text  # list numbers removed
    assert text.endswith("Right upper lobe nodule. No acute cardiopulmonary process.")  # item closed by a stop
    assert "pneumonia" not in text  # INDICATION is not selected
    assert split_sentences(text) == [
        "There is a 1.5 cm nodule in the right upper lobe, approx. unchanged since.",
        "The heart size is normal.",
        "No pleural effusion or pneumothorax.",
        "Right upper lobe nodule.",
        "No acute cardiopulmonary process.",
    ]
    assert select_sections(extract_sections(MIMIC_REPORT), ("impression",)).startswith("Right upper lobe nodule.")
    everything = select_sections(extract_sections(MIMIC_REPORT), "all")
    assert everything.startswith("CHEST (PA AND LAT).") and "pneumonia" in everything


@pytest.mark.parametrize(
    "text, expected",
    [
        ("FINDINGS: Lungs clear.\nIMPRESSION: Normal.", {"findings": "Lungs clear.", "impression": "Normal."}),
        ("findings:\nLungs clear.\n\nimpression:\nNormal.", {"findings": "Lungs clear.", "impression": "Normal."}),
        ("Findings: Lungs clear.\nImpression:  Normal.", {"findings": "Lungs clear.", "impression": "Normal."}),
        ("  FINDINGS :Lungs clear.", {"findings": "Lungs clear."}),
        ("IMPRESSIONS: Normal.\nCONCLUSION: Stable.", {"impression": "Normal.\nStable."}),  # aliases, merged
        ("FINDINGS: Lungs clear. IMPRESSION: Normal.", {"findings": "Lungs clear.", "impression": "Normal."}),
        (
            "History: cough\nPA AND LATERAL VIEWS OF THE CHEST:\nLungs clear.",
            {"history": "cough", "pa and lateral views of the chest": "Lungs clear."},
        ),
        (
            "WET READ: ___ 10:30 AM  small effusion\nFINAL REPORT\nFINDINGS: Effusion.",
            {"wet read": "___ 10:30 AM  small effusion", "final report": "", "findings": "Effusion."},
        ),
        ("Lungs are clear. Heart size normal.", {"preamble": "Lungs are clear. Heart size normal."}),
    ],
)
def test_header_variants(text, expected):
    assert extract_sections(text) == expected


def test_mid_sentence_words_are_not_headers():
    # a lower-case "impression:" inside a sentence, and times like 10:30, do not open sections
    sections = extract_sections("FINDINGS: The overall impression: stable at 10:30 today.")
    assert sections == {"findings": "The overall impression: stable at 10:30 today."}


@pytest.mark.parametrize(
    "raw, cleaned",
    [
        ("Normal chest x-XXXX.", "Normal chest x-ray."),
        ("There are no XXXX of a pleural effusion.", "There are no of a pleural effusion."),
        ("XXXX-year-old ( ___ ) male , seen  ___ .", "year-old male, seen."),
        ("1. Small effusion.  2. No pneumothorax.", "Small effusion. No pneumothorax."),
        ("Stable.\n1. Small effusion\n2. Nodule 1.5 cm", "Stable. Small effusion. Nodule 1.5 cm"),
        ("Line one\ncontinues here.\n\nNew paragraph", "Line one continues here. New paragraph"),
        ("Heart size is normal ,  lungs clear .", "Heart size is normal, lungs clear."),
        ("___ with cough , ? pneumonia .", "with cough, ? pneumonia."),
    ],
)
def test_clean_report(raw, cleaned):
    assert clean_report(raw) == cleaned


@pytest.mark.parametrize(
    "text, sentences",
    [
        ("A 1.5 cm nodule. No effusion.", ["A 1.5 cm nodule.", "No effusion."]),
        ("Nodule measures approx. 2 cm. Seen by Dr. Smith.", ["Nodule measures approx. 2 cm.", "Seen by Dr. Smith."]),
        ("1. No effusion. 2. Mild cardiomegaly.", ["No effusion.", "Mild cardiomegaly."]),
        ("Effusion vs. atelectasis, e.g. at the base. Next.", ["Effusion vs. atelectasis, e.g. at the base.", "Next."]),
        ("Pneumonia? Unlikely! Called at 10 a.m. today", ["Pneumonia?", "Unlikely!", "Called at 10 a.m. today"]),
        ("Cough, ? pneumonia. Fever?", ["Cough, ? pneumonia.", "Fever?"]),
        ("no final stop", ["no final stop"]),
        ("  ...  . ", []),
        ("", []),
    ],
)
def test_split_sentences(text, sentences):
    assert split_sentences(text) == sentences


def test_headerless_report_counts_as_findings():
    sections = extract_sections("Lungs are clear.\nHeart size is normal.")
    assert select_sections(sections) == "Lungs are clear. Heart size is normal."
    with pytest.raises(DataError, match="missing report section: IMPRESSION .*no section headers"):
        select_sections(sections, ("impression",), source="r.txt")


def test_select_sections_errors_name_the_source():
    with pytest.raises(
        DataError,
        match=r"^s1\.txt: missing report section: FINDINGS/IMPRESSION \(sections found: " r"indication, comparison\)",
    ):
        select_sections(extract_sections("INDICATION: cough\nCOMPARISON: none"), source="s1.txt")
    # a wanted header with nothing under it is missing too
    with pytest.raises(DataError, match="missing report section: FINDINGS/IMPRESSION"):
        select_sections(extract_sections("FINDINGS:\n___\nINDICATION: cough"), source="s2.txt")
    for empty in ({}, {"findings": "  ", "impression": "___"}, extract_sections(" \n ")):
        with pytest.raises(DataError, match="empty report"):
            select_sections(empty, source="s3.txt")


def test_read_report_file(tmp_path):
    path = tmp_path / "s50414267.txt"
    path.write_text(MIMIC_REPORT, encoding="utf-8")
    assert read_report_file(path) == select_sections(extract_sections(MIMIC_REPORT))
    assert read_report_file(path, ("findings",)).endswith("No pleural effusion or pneumothorax.")
    bom = tmp_path / "bom.txt"
    bom.write_bytes(b"\xef\xbb\xbfFINDINGS: Clear lungs.\r\nIMPRESSION: Normal.\r\n")
    assert read_report_file(bom) == "Clear lungs. Normal."


@pytest.mark.parametrize(
    "content, problem",
    [
        (None, "missing report file"),
        (b"", "empty report"),
        (b"  \n\t\n", "empty report"),
        (b"FINDINGS: caf\xe9 \xff\xfe\n", "undecodable report file"),
        (b"INDICATION: cough\nTECHNIQUE: PA\n", "missing report section: FINDINGS/IMPRESSION"),
        (b"FINAL REPORT\nFINDINGS:\nIMPRESSION:\n", "empty report"),
    ],
)
def test_read_report_file_errors(tmp_path, content, problem):
    path = tmp_path / "bad.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=re.escape(problem)) as info:
        read_report_file(path)
    assert info.value.path == str(path)


def test_parse_iu_xml_from_path_and_bytes(tmp_path):
    path = tmp_path / "7.xml"
    path.write_text(IU_XML, encoding="utf-8")
    parsed = parse_iu_xml(path)
    assert parsed == {
        "id": "CXR7",
        "findings": "Mild cardiomegaly. There are no XXXX of a pleural effusion.",
        "impression": "Cardiomegaly. Otherwise normal chest x-XXXX.",
        "indication": "XXXX-year-old with cough",
        "comparison": "None.",
        "mesh": ["Cardiomegaly/mild"],
        "images": ["CXR7_1_IM-0009-1001", "CXR7_1_IM-0009-2001"],
    }
    assert parse_iu_xml(IU_XML.encode("utf-8"), source="archive.tgz:7.xml") == parsed
    # the parsed dict feeds select_sections directly: placeholders are removed there
    assert select_sections(parsed) == (
        "Mild cardiomegaly. There are no of a pleural effusion. Cardiomegaly. Otherwise normal chest x-ray."
    )


def test_parse_iu_xml_without_uid_uses_iuxrid():
    xml = IU_XML.replace('<uId id="CXR7"/>', "").encode()
    assert parse_iu_xml(xml)["id"] == "CXR7"
    with pytest.raises(DataError, match="without <uId"):
        parse_iu_xml(xml.replace(b'<IUXRId id="7"/>', b""), source="7.xml")


def test_parse_iu_xml_errors(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text(IU_XML.replace("</eCitation>", ""), encoding="utf-8")
    with pytest.raises(DataError, match=r"broken\.xml: malformed XML"):
        parse_iu_xml(broken)
    with pytest.raises(DataError, match=r"a\.tgz:1\.xml: malformed XML"):
        parse_iu_xml(b"<eCitation><uId", source="a.tgz:1.xml")
    with pytest.raises(DataError, match=r"missing report file"):
        parse_iu_xml(tmp_path / "absent.xml")
    with pytest.raises(DataError, match=r"not an IU X-ray report: root element <html>"):
        parse_iu_xml(b"<html><body/></html>", source="page.xml")


def test_xrv_iu_reports():
    path = xrv_iu_reports_path()
    if path is None:
        pytest.skip("torchxrayvision (with data/NLMCXR_reports.tgz) is not installed")
    assert path.name == "NLMCXR_reports.tgz" and path.is_file()
    first = list(itertools.islice(iter_iu_reports_from_xrv(), 3))
    assert [r["id"] for r in first] == ["CXR1", "CXR2", "CXR3"]  # numeric order, not the archive's 1, 10, 100
    assert first[0]["mesh"] == ["normal"] and first[0]["images"][0] == "CXR1_1_IM-0001-3001"
    assert "pneumothorax" in first[0]["findings"]


def test_normalise_report_text_ignores_case_punctuation_and_spacing():
    from bundle.evaluation.clinical import normalise_report

    same = [
        "No acute cardiopulmonary process.",
        "no acute  cardiopulmonary\nprocess",
        "NO ACUTE, CARDIOPULMONARY process!",
    ]
    assert {normalise_report_text(t) for t in same} == {"no acute cardiopulmonary process"}
    assert normalise_report_text("Heart size ___ normal;  x-ray 1.5 cm") == "heart size normal x ray 1 5 cm"
    assert normalise_report_text("No pneumothorax.") != normalise_report_text("Pneumothorax.")
    assert normalise_report_text(" .,; ") == ""
    assert normalise_report(same[2]) == normalise_report_text(same[2])  # the evaluation reads the same form
