"""CheXpert-style rule labeler: report text -> the 14 CheXpert observations (1 / 0 / -1 / None), offline.

It follows the CheXpert labeler (Irvin et al., 2019) in three stages, with our own phrase lists and regular
expressions in place of its NegBio dependency patterns, so it needs no Java and no downloaded model:

1. *Mention extraction*: per observation, phrases and their synonyms ("enlarged cardiac silhouette",
   "blunting of the costophrenic angle", "PICC line"). Anatomy mentioned with a normal state ("heart size is
   normal", "lungs are clear", "costophrenic angles are sharp") is a negative statement for the
   observations it rules out.
2. *Classification* of each mention within its clause (the sentence cut at "but", "however", ";", ...):
   negation-like uncertainty ("cannot be excluded") -> uncertain; else a negation cue in a window before it
   ("no", "without", "free of", "resolved") or after it ("is not seen", "has resolved") -> negative; else an
   uncertainty cue ("may", "possible", "likely", "versus", "?") or "X or Y" between two findings ->
   uncertain; else positive. Pseudo-negations ("no change in") are not cues.
3. *Aggregation* per report: any positive -> 1.0; else any uncertain -> -1.0; else any negative -> 0.0;
   else None. "No Finding" is 1.0 when no observation other than Support Devices is positive or uncertain,
   else None (CheXpert convention).

The same labeler labels the embedded dataset's reports and judges generated reports (label agreement).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .labels import CHEXPERT_CLASSES, NEGATIVE, POSITIVE, UNCERTAIN
from .reports import clean_report, split_sentences

__all__ = ["Mention", "ReportLabeler", "aggregate", "label_report", "mentions", "MENTION_PHRASES", "NORMAL_STATEMENTS"]

NO_FINDING = "No Finding"
SUPPORT_DEVICES = "Support Devices"

# A gap of a few words that holds no negation, no contrast and no normal state ("heart size is mildly enlarged").
_GAP = r"(?:(?!(?:no|not|without|but|however|normal|clear|unremarkable)\b)[\w/-]+ ){0,%d}?"
_GAP4 = _GAP % 4
_GAP6 = _GAP % 6
_NORMAL_STATE = (
    r"(?:normal|within (?:normal limits|limits of normal)|unremarkable|upper limits? (?:of )?normal|top[- ]normal"
    r"|not (?:\w+ )?(?:enlarged|widened))"
)
_HEART = r"(?:heart|cardiac)(?: size| silhouette| shadow| contours?)?"
_MEDIASTINUM = (
    r"(?:(?:cardio)?mediastinal (?:and hilar )?(?:silhouettes?|contours?|shadow|width|structures)"
    r"|(?:cardio)?mediastinum)"
)
_VASCULATURE = r"(?:pulmonary )?vascula(?:rity|ture|r markings)"

#: Mention phrases (regular expressions over lower-case, whitespace-collapsed text) per observation.
MENTION_PHRASES: dict[str, tuple[str, ...]] = {
    "Atelectasis": (
        r"atelecta\w*",
        r"(?:lobar|lobe|lung|segmental|subsegmental) collapse",
        r"collapse of (?:the |a )?(?:\w+ ){0,4}?(?:lobes?|lungs?|segments?)",
        r"collapsed (?:\w+ ){0,2}(?:lobes?|lungs?|segments?)",
        r"volume loss",
    ),
    "Cardiomegaly": (
        r"cardiomegaly",
        r"(?:cardiac|heart) enlargement",
        r"(?:enlargement|increase) (?:of|in) (?:the )?(?:size of the )?"
        r"(?:heart|cardiac (?:silhouette|shadow|size))(?: size)?",
        r"(?:enlarged|large|prominent|increased) (?:heart|cardiac (?:silhouette|shadow|contours?|size)|heart size)",
        rf"{_HEART} {_GAP4}(?:enlarged|increased|large|prominent)",
        r"borderline (?:heart size|cardiac (?:size|silhouette)|enlarged)",
        rf"{_HEART} {_GAP4}borderline",
        rf"{_HEART} (?:\w+ ){{0,3}}?(?:upper limits? (?:of )?normal|top[- ]normal|normal) (?:or|to) "
        r"(?:\w+ )?(?:enlarged|large)",
    ),
    "Consolidation": (r"consolidat\w*",),
    "Edema": (
        r"edema(?:tous)?",
        r"(?:pulmonary |vascular |venous |interstitial )congestion",
        r"congestive (?:heart )?failure",
        r"heart failure",
        r"\bchf",
        r"pulmonary venous hypertension",
        r"(?:vascular|venous) (?:engorgement|redistribution|plethora|indistinctness)",
        r"(?:engorged|indistinct|hazy|congested) (?:pulmonary )?vascula\w*",
        r"(?:increased|prominent|prominence of the|engorgement of the) (?:central )?(?:pulmonary |lung )?vascula\w+",
        rf"(?:pulmonary |lung |central )?vascula(?:rity|ture|r markings) {_GAP4}"
        r"(?:prominent|increased|engorged|congested|indistinct)",
        r"(?:pulmonary )?vascular prominence",
        r"congestion",
        r"cephalization",
        r"kerley",
        r"(?:fluid|volume) overload",
    ),
    "Enlarged Cardiomediastinum": (
        rf"{_MEDIASTINUM} {_GAP4}(?:enlarged|widened|wide|increased|prominent|widening|enlargement)",
        rf"(?:widened|widening of the|enlarged|enlargement of the|wide|prominent) {_MEDIASTINUM}",
        r"mediastinal (?:widening|enlargement)",
    ),
    "Fracture": (r"fractur\w*", r"\bfx"),
    "Lung Lesion": (
        r"nodul(?:e|es|ar|arity)",
        r"mass(?:es)?",
        r"(?:lung|pulmonary|cavitary|cavitating|parenchymal|spiculated) lesions?",
        r"cavitation",
        r"neoplasms?|tumou?rs?|carcinoma|malignan(?:cy|t)|metasta\w+",
    ),
    "Lung Opacity": (
        r"opaci(?:ty|ties|fication|fications|fied)",
        r"infiltrat\w*",
        r"densit(?:y|ies)",
        r"air[- ]?space (?:disease|process)",
        r"haz(?:y|iness)",
        r"ground[- ]glass",
        r"interstitial (?:markings?|opacit\w+|prominence|pattern|thickening|abnormalit\w+|disease|changes?"
        r"|lung disease)",
        r"(?:increased|prominent|coarse|coarsened) (?:\w+ )?markings",
        r"reticula(?:r|tion)\w*",
        r"(?:peribronchial|bronchial wall|bronchovascular) thickening",
        r"scar(?:ring|s)?",
    ),
    "Pleural Effusion": (
        r"(?:pleural )?effusions?",
        r"pleural fluid",
        r"fluid (?:in|within) the (?:\w+ )?(?:pleural spaces?|fissures?|costophrenic)",
        r"(?:layering|loculated) fluid|fluid layering",
        r"(?:hydro|hemo)thorax",
        r"hydropneumothora(?:x|ces)",
        r"empyema",
        r"blunt(?:ing|ed) of the (?:\w+ ){0,2}(?:costophrenic|cp angles?|sulcus|sulci|recess)",
        r"blunt(?:ing|ed) (?:\w+ ){0,2}(?:costophrenic|cp angles?)",
        r"(?:costophrenic|cp) (?:angles? |sulcus |sulci )?(?:is |are )?(?:\w+ )?blunt(?:ing|ed)",
    ),
    "Pleural Other": (
        r"pleural (?:thickening|plaques?|scar\w*|calcifications?|abnormalit\w+|reaction)",
        r"pleuro-?parenchymal (?:scar\w*|thickening|changes?|opacit\w+)",
        r"pleural-parenchymal (?:scar\w*|thickening|changes?|opacit\w+)",
        r"fibrothorax",
        r"fibros[ie]s|fibrotic(?: changes?)?",
        r"(?:fissural|interlobar) thickening|thickening (?:of|in|along) the (?:\w+ )?fissures?",
        r"apical (?:pleural )?cap(?:ping|s)?",
    ),
    "Pneumonia": (
        r"pneumonias?",
        r"bronchopneumonia",
        r"pneumonitis",
        r"\bpna",
        r"infectio(?:n|us)\w*",
        r"infected",
        r"aspiration",
    ),
    "Pneumothorax": (r"(?:hydro|hemo)?pneumothora(?:x|ces)", r"\bptx", r"pleural air"),
    "Support Devices": (
        r"tubes?",
        r"\bett",
        r"endotracheal",
        r"(?:tracheostomy|tracheotomy)",
        r"catheters?",
        r"\bpicc",
        r"(?:central venous|central|venous|midline|arterial|hemodialysis|dialysis|swan[- ]ganz|pulmonary artery|pa"
        r"|ij|internal jugular|subclavian|femoral|port|tunnel(?:l)?ed|triple[- ]lumen|double[- ]lumen|hickman"
        r"|permacath|quinton|infusion|support|monitoring|indwelling|vascular) (?:line|lines|catheters?)",
        r"a-lines?",
        r"pacemakers?|pacers?|pacing (?:wires?|leads?|device|generator)",
        r"(?:pacemaker|pacer|icd|aicd|defibrillator|transvenous|epicardial|cardiac|ekg|ecg|monitoring|atrial"
        r"|ventricular|rv|ra) (?:leads?|wires?|generator|device|pads?)",
        r"\b(?:icd|aicd)",
        r"defibrillators?",
        r"loop recorder",
        r"(?:sternotomy|sternal|cerclage) wires?",
        r"wires?",
        r"stents?",
        r"hardware",
        r"(?:prosthetic|mechanical|bioprosthetic|replacement) (?:\w+ )?valves?|valve (?:replacement|prosthesis)",
        r"\b(?:tavr|tavi|avr|mvr|lvad|iabp)",
        r"balloon pump|impella|ventricular assist device",
        r"port-?a-?cath|portacath|mediport|(?:chest|subclavian|power|infusion|venous|chest wall) port",
        r"drains?",
        r"coils?",
        r"guide ?wire",
        r"electrodes?",
        r"cannula\w*",
        r"devices?",
        r"screws|(?:fixation|surgical|metallic|orthopedic|compression) (?:plates?|rods?)|spinal rods?",
        r"arthroplast\w+|prosthes[ie]s|prosthetic \w+",
        r"tubing|shunts?|(?:neuro|spinal cord |spinal |nerve )?stimulators?|(?:bone |suture )?anchors?|occluder"
        r"|internal fixation|(?:ivc|vena cava) filter",
        # the device word is often de-identified ("right chest XXXX with tip in the SVC"): its tip still tells
        r"(?:distal |catheter |its |the )?tip (?:\w+ ){0,2}?(?:projects?|projecting|overl(?:ies|ying)|terminat\w+"
        r"|approximat\w+|positioned|located|lies|in|at|within|near|over)",
        r"leads (?:\w+ )?(?:terminat\w+|project\w*|overl\w+|in the|within|extend\w*|positioned)",
    ),
}

#: Normal statements: a phrase that rules the listed observations out (a negative mention for each).
NORMAL_STATEMENTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (rf"{_HEART} {_GAP6}{_NORMAL_STATE}", ("Cardiomegaly",)),
    (r"normal[- ](?:sized? )?(?:heart|cardiac)(?: size| silhouette| shadow| contours?)?", ("Cardiomegaly",)),
    (rf"cardiomediastinal (?:silhouettes?|contours?) {_GAP6}{_NORMAL_STATE}", ("Cardiomegaly",)),
    (r"normal cardiomediastinal (?:silhouettes?|contours?)", ("Cardiomegaly",)),
    (rf"{_MEDIASTINUM} {_GAP6}{_NORMAL_STATE}", ("Enlarged Cardiomediastinum",)),
    (rf"normal {_MEDIASTINUM}", ("Enlarged Cardiomediastinum",)),
    (rf"(?:heart|cardiac) and mediastin\w* (?:\w+ ){{0,3}}?{_NORMAL_STATE}",
     ("Enlarged Cardiomediastinum",)),
    (r"lungs? (?:fields? )?(?:(?!(?:no|not|but|except|without)\b)[\w/-]+ ){0,4}?clear\b",
     ("Lung Opacity", "Consolidation")),
    (r"clear lungs?", ("Lung Opacity", "Consolidation")),
    (r"(?:costophrenic|cp) (?:angles?|sulci|sulcus|recesses) (?:\w+ ){0,2}?(?:sharp|clear|preserved|normal|intact)",
     ("Pleural Effusion",)),
    (r"sharp (?:costophrenic|cp) (?:angles?|sulci)", ("Pleural Effusion",)),
    (r"pleural spaces? (?:\w+ ){0,2}?(?:clear|normal|unremarkable)", ("Pleural Effusion", "Pneumothorax")),
    (rf"{_VASCULATURE} {_GAP4}(?:{_NORMAL_STATE}|not (?:\w+ )?(?:congested|engorged|increased))",
     ("Edema",)),
    (rf"normal {_VASCULATURE}", ("Edema",)),
    (r"(?:osseous|bony|skeletal) (?:structures? |thorax )?(?:\w+ ){0,3}?(?:intact|unremarkable|within normal limits)",
     ("Fracture",)),
    (r"normal (?:chest|study|exam|examination|radiograph|x-ray)",
     ("Cardiomegaly", "Lung Opacity", "Consolidation", "Edema", "Pleural Effusion", "Pneumothorax")),
)

# Phrases that contain a mention but are not that finding.
_EXCLUSIONS = re.compile(
    r"\b(?:pericardial effusions?|(?:joint|knee|shoulder|elbow) effusions?|(?:soft tissue|subcutaneous|chest wall"
    r"|extremity) edema|mass effect|(?:bone|osseous|bone mineral|breast) densit\w+|(?:muscle|soft tissue) mass"
    r"|lytic lesions?|bony lesions?|eustachian tubes?|(?:fallopian) tubes?|skin folds?)\b"
)

# Clause boundaries: a cue's scope never crosses these.
_CLAUSE_BREAK = re.compile(
    r"[;:]|(?<!consistent )(?<!compatible )(?<!associated )(?<!along )\bwith\b"
    r"|\b(?:but|however|although|though|except|whereas|while|yet|which|apart from|aside from|other than"
    r"|in addition)\b|,? and there (?:is|are|has been|have been)\b|, there (?:is|are|has been|have been)\b"
)
# Cue patterns. Pre-window cues must lie within _WINDOW words before the mention.
_WINDOW = 14
_PSEUDO_NEGATION = re.compile(
    r"\bno (?:significant |definite |interval |substantial |appreciable |major |marked |real )*"
    r"(?:change|increase|worsening|progression|difference|enlargement)\b"
    r"|\bnot (?:significantly |substantially |appreciably |markedly )?"
    r"(?:changed|increased|only|worse|worsened|improved)\b"
    r"|\bwithout (?:significant |interval )*(?:change|increase|progression)\b"
    r"|\bno sooner\b"
)
_NEGATION_UNCERTAIN = (
    r"(?:cannot|can ?not|could not|can't) (?:be )?(?:entirely |completely |totally |definitely |fully )?"
    r"(?:exclude[ds]?|ruled? out|excluded)"
    r"|\bnot (?:be )?(?:entirely |completely |totally |definitely )?(?:excluded|ruled out)"
    r"|(?:difficult|hard|impossible) to (?:exclude|rule out|assess|evaluate)"
    r"|(?:cannot|can ?not) (?:be )?(?:assessed|evaluated)"
)
_PRE_NEGATION_UNCERTAIN = re.compile(_NEGATION_UNCERTAIN)
_POST_NEGATION_UNCERTAIN = re.compile(rf"^\W*(?:[\w/-]+\W+){{0,4}}?(?:{_NEGATION_UNCERTAIN})")
_PRE_NEGATION = re.compile(
    r"\b(?:no|not|without|absence of|absent|free of|negative for|resolved|resolution of|clear of|clearing of"
    r"|removal of|removed|rather than|never|nor|neither|ruled out|rules out|no longer|nothing to suggest)\b"
)
_POST_NEGATION = re.compile(
    r"^\W*(?:(?!tip\b|end\b)[\w/-]+\W+){0,3}?(?:(?:is|are|was|were|has|have|had)\W+)?(?:been\W+)?"
    r"(?:(?:not|no longer) (?:\w+ )?(?:seen|present|identified|appreciated|visualized|visible|evident|demonstrated"
    r"|noted|detected|apparent|observed|demonstrable)"
    r"|(?:\w+ )?(?:resolved|cleared|disappeared|removed|withdrawn|absent|excluded|ruled out|gone)\b"
    r"|(?:appears?\W+|remains?\W+)?(?:within (?:normal limits|limits of normal)|normal)\b)"
)
_UNCERTAINTY = (
    r"\b(?:may|might|could|possibl[ey]|probabl[ey]|likely|unlikely|presum\w+|suspect\w*|suspicious|suspicion"
    r"|suggest\w*|question\w*|concern(?:ing)? for|worrisome for|equivocal|indeterminate|uncertain"
    r"|versus|vs|differential|consideration|considered|rule out|r/o|evaluate for|eval for|assess for"
    r"|to exclude|either|not clearly|cannot be|correlat\w+ for|follow-?up for|evaluation for)\b"
)
_PRE_UNCERTAIN = re.compile(_UNCERTAINTY)
_POST_UNCERTAIN = re.compile(  # predicates of the mention itself: "effusion is possible", not "effusion, likely ..."
    r"^\s*(?:[\w/-]+\s+){0,3}?(?:"
    r"(?:is|are|was|were|remains?|seems?|appears?)\s+(?:(?:also|still|less|more|most|quite|very)\s+)?"
    r"(?:possible|suspected|questioned|questionable|likely|probable|a possibility|a consideration|considered"
    r"|in question|uncertain|equivocal)"
    r"|versus|vs\b|\?|suspected|questioned|(?:possibly|probably|may be|might be|could be|is likely) present)"
)
_NEAR_UNCERTAIN = re.compile(r"\bborderline (?:[\w-]+ )?$")  # modifies the next word or two only
_HEART_FAILURE = re.compile(r"chf|(?:congestive )?heart failure")
_EITHER_OR = re.compile(r"\W*(?:and/)?(?:or|versus|vs)\W+(?:[\w/-]+\W+){0,3}")


@dataclass(frozen=True)
class Mention:
    """One classified mention: observation, label (1 / 0 / -1), phrase, its span in the (lower-case) sentence, and
    the rule that decided the label ("positive", "negated", "uncertain", "negation-uncertain", "normal")."""

    observation: str
    label: float
    phrase: str
    sentence: str
    start: int
    end: int
    rule: str


def _compile(phrases: Iterable[str]) -> re.Pattern:
    return re.compile(r"(?<![\w-])(?:" + "|".join(phrases) + r")(?![\w])")


_MENTION_RES: tuple[tuple[str, re.Pattern], ...] = tuple(
    (name, _compile(phrases)) for name, phrases in MENTION_PHRASES.items()
)


def _group_normal_statements() -> tuple[tuple[re.Pattern, tuple[str, ...]], ...]:
    """One pattern per set of ruled-out observations (fewer regex scans per sentence)."""
    groups: dict[tuple[str, ...], list[str]] = {}
    for pattern, observations in NORMAL_STATEMENTS:
        groups.setdefault(observations, []).append(pattern)
    return tuple((_compile(patterns), observations) for observations, patterns in groups.items())


_NORMAL_RES = _group_normal_statements()
_WORD = re.compile(r"\S+")


def _clauses(sentence: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for match in _CLAUSE_BREAK.finditer(sentence):
        bounds.append((start, match.start()))
        start = match.end()
    bounds.append((start, len(sentence)))
    return bounds


def _last_words(text: str, n: int) -> str:
    starts = [m.start() for m in _WORD.finditer(text)]
    return text[starts[-n]:] if len(starts) > n else text


def _classify(sentence: str, start: int, end: int, clause: tuple[int, int], paired: bool) -> tuple[float, str]:
    raw_pre = _last_words(sentence[clause[0] : start], _WINDOW)
    pre = _PSEUDO_NEGATION.sub(" ", raw_pre)
    post = _PSEUDO_NEGATION.sub(" ", sentence[end : clause[1]])
    if _PRE_NEGATION_UNCERTAIN.search(pre) or _POST_NEGATION_UNCERTAIN.match(post):
        return UNCERTAIN, "negation-uncertain"
    if _PRE_NEGATION.search(pre) or _POST_NEGATION.match(post):
        return NEGATIVE, "negated"
    if (
        _PRE_UNCERTAIN.search(pre)
        or _NEAR_UNCERTAIN.search(pre)
        or _PRE_UNCERTAIN.search(sentence[start:end])
        or "borderline" in sentence[start:end]
        or " or " in sentence[start:end]
        or _POST_UNCERTAIN.match(post)
        or "?" in sentence[clause[0] : clause[1]]
        or (paired and not _PRE_NEGATION.search(raw_pre))
    ):
        return UNCERTAIN, "uncertain"
    return POSITIVE, "positive"


def _sentence_mentions(sentence: str) -> list[Mention]:
    """Normal statements and classified finding mentions in one lower-case sentence."""
    out: list[Mention] = []
    for pattern, observations in _NORMAL_RES:
        for match in pattern.finditer(sentence):
            for name in observations:
                out.append(Mention(name, NEGATIVE, match.group(0), sentence, match.start(), match.end(), "normal"))
    excluded = [m.span() for m in _EXCLUSIONS.finditer(sentence)]
    found: list[tuple[str, int, int]] = []
    for name, pattern in _MENTION_RES:
        for match in pattern.finditer(sentence):
            s, e = match.span()
            if not any(s < xe and xs < e for xs, xe in excluded):
                found.append((name, s, e))
    # a phrase inside a longer phrase of another observation belongs to that one ("pleural scarring")
    found = [
        (n, s, e)
        for n, s, e in found
        if not any(n2 != n and s2 <= s and e <= e2 and (e2 - s2) > (e - s) for n2, s2, e2 in found)
    ]
    found.sort(key=lambda f: f[1])
    clauses = _clauses(sentence)

    def clause_of(pos: int) -> tuple[int, int]:
        return next((c for c in clauses if c[0] <= pos <= c[1]), (0, len(sentence)))

    paired: set[int] = set()
    for i in range(len(found) - 1):
        (n1, _, e1), (n2, s2, _) = found[i], found[i + 1]
        if n1 != n2 and clause_of(e1) == clause_of(s2) and _EITHER_OR.fullmatch(sentence[e1:s2]):
            paired.update((i, i + 1))
    for i, (name, s, e) in enumerate(found):
        label, rule = _classify(sentence, s, e, clause_of(s), i in paired)
        out.append(Mention(name, label, sentence[s:e], sentence, s, e, rule))
    return out


def mentions(text: str) -> list[Mention]:
    """All classified mentions in a report (debug view of :func:`label_report`)."""
    out: list[Mention] = []
    for sentence in split_sentences(clean_report(text)):
        out.extend(_sentence_mentions(sentence.lower()))
    return out


def aggregate(found: Iterable[Mention]) -> dict[str, float | None]:
    """CheXpert aggregation of mentions into a label record over :data:`CHEXPERT_CLASSES`."""
    seen: dict[str, set[float]] = {}
    for mention in found:
        seen.setdefault(mention.observation, set()).add(mention.label)
        if mention.label != NEGATIVE and _HEART_FAILURE.fullmatch(mention.phrase):
            seen.setdefault("Cardiomegaly", set()).add(UNCERTAIN)  # CheXpert: heart failure hints at cardiomegaly
    record: dict[str, float | None] = {}
    for name in CHEXPERT_CLASSES:
        labels = seen.get(name, set())
        record[name] = next((v for v in (POSITIVE, UNCERTAIN, NEGATIVE) if v in labels), None)
    findings = [v for n, v in record.items() if n not in (NO_FINDING, SUPPORT_DEVICES)]
    record[NO_FINDING] = POSITIVE if not any(v in (POSITIVE, UNCERTAIN) for v in findings) else None
    return record


def label_report(text: str) -> dict[str, float | None]:
    """Label one report: ``{observation: 1.0 | 0.0 | -1.0 | None}`` over the 14 CheXpert classes, in order."""
    return aggregate(mentions(text))


class ReportLabeler:
    """Callable labeler (the CheXpert rules of this module), for pipelines and label-agreement metrics."""

    class_names: tuple[str, ...] = CHEXPERT_CLASSES

    def __call__(self, text: str) -> dict[str, float | None]:
        return label_report(text)

    def label_many(self, texts: Sequence[str] | Iterable[str]) -> list[dict[str, float | None]]:
        """Label several reports, in order."""
        return [label_report(text) for text in texts]
