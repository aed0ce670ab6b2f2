"""The experiments on the embedded dataset: the settings (config overrides per setting), the preset, the summary and
baseline keys the results page reads, and the targets it holds the ``full`` setting to.

A setting is a set of training config overrides on ``configs/train.json`` + ``configs/demo.json``; the command's own
overrides must be ids of those configs or of ``configs/inference.json`` (:func:`unknown_overrides`), so a misspelt
flag stops the command instead of being ignored by the configs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from bundle import workflows
from bundle.evaluation import summary as evaluation_summary

CONFIG_DIR = workflows.CONFIG_DIR
#: The preset every setting trains and generates with: the demo's CPU-sized training and generation configs.
TRAIN_CONFIGS = list(workflows.DEMO_TRAIN_CONFIGS)
INFER_CONFIGS = list(workflows.DEMO_INFER_CONFIGS)
CLASSIFIER_CONFIGS = list(workflows.CLASSIFIER_CONFIGS)

#: The setting that trains F alone: every adversarial and rotation term off and G's consistency term off, so G gets
#: no gradient and F learns by teacher forcing (with its label head) for exactly the F steps of a full run: the same
#: warm-up, then one teacher-forcing step per GAN iteration.
DECODER_ALONE = "decoder_alone"
#: The experiments: config overrides per setting (EMIXER section 4: limited labels, with and without the rotation
#: self-supervision the paper credits for them, the SM-GAN ablation, the preset's extra terms each switched off, and the
#: teacher-forcing-only decoder baseline).
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {},
    "label_fraction_0.3": {"label_fraction": 0.3},
    "label_fraction_0.5": {"label_fraction": 0.5},
    "label_fraction_0.3_no_rotation": {"label_fraction": 0.3, "use_rotation_loss": False},
    "label_fraction_0.5_no_rotation": {"label_fraction": 0.5, "use_rotation_loss": False},
    "sm_gan": {"report_loss_weight": 0.0, "joint_loss_weight": 0.0},
    # the preset with one extra term off (the paper has none of them), and its text path unbounded or off
    "no_auxiliary_classifier": {"classification_weight": 0.0},
    "no_consistency": {"consistency_weight": 0.0},
    "no_warmup": {"report_warmup_iterations": 0},
    "text_path_unbounded": {"f_adversarial_max_ratio": None, "text_grad_max_ratio": None},
    "text_path_off": {"f_adversarial_weight": 0.0, "text_grad_to_generator": 0.0},
    DECODER_ALONE: {
        "image_loss_weight": 0.0,
        "use_rotation_loss": False,
        "report_loss_weight": 0.0,
        "joint_loss_weight": 0.0,
        "classification_weight": 0.0,
        "consistency_weight": 0.0,
    },
}
#: Settings that are trained only (no generation, no evaluation of their own).
TRAIN_ONLY_SETTINGS = frozenset({DECODER_ALONE})
NO_ROTATION_SUFFIX = "_no_rotation"

#: ``metrics["summary"]`` of :func:`bundle.evaluation.suite.evaluate`: one flat value per key (None when it cannot
#: be computed, the reason in ``metrics["summary_skipped"][key]``).
SUMMARY_KEYS: tuple[str, ...] = evaluation_summary.SUMMARY_KEYS
#: Training facts kept in each summary row beside the summary keys.
RUN_KEYS: tuple[str, ...] = ("iterations", "planned_iterations", "seconds_per_iteration", "train_wall_s")
#: ``metrics["baselines"]``: reports that learn nothing (and F by teacher forcing alone), scored like the model's
#: reports and paired with the same generated images; ``fallback_rate`` (requests with no training report of their
#: label set) is read from a block's ``fallbacks``.
BASELINE_NAMES: tuple[str, ...] = ("retrieval_by_labels", "most_common_per_label_set", DECODER_ALONE)
BASELINE_KEYS: tuple[str, ...] = (*evaluation_summary.BASELINE_KEYS, "fallback_rate")
#: A summary key -> its value on the real test reports (the "real test" reference row of the tables).
REAL_COUNTERPARTS: dict[str, str] = {
    "distinct_2": "distinct_2_real",
    "self_bleu_4": "self_bleu_4_real",
    "max_bleu_to_train_mean": "max_bleu_to_train_mean_real",
    "verbatim_rate": "verbatim_rate_real",
    "pair_agreement_generated": "pair_agreement_real",
}
#: The preset's training config values the page and the JSON state (configs/train.json + configs/demo.json +
#: the command's overrides), with what each turns on; the inference ``report_source`` is read from the inference
#: configs.
PRESET_KEYS: dict[str, str] = {
    "use_rotation_loss": "rotation self-supervision of D_image and G",
    "label_conditioned_reports": "F writes its reports from (predicted or given) labels",
    "f_adversarial_weight": "scale of the text-adversarial gradient F itself gets",
    "f_adversarial_max_ratio": "bound on that gradient per tensor, relative to F's teacher-forcing gradient",
    "text_grad_to_generator": "scale of the report / joint gradient that reaches G through F",
    "text_grad_max_ratio": "bound on that gradient per image, relative to G's image terms' gradient",
    "report_warmup_iterations": "teacher-forcing steps of F alone before the first GAN iteration",
    "consistency_weight": "G's label consistency term read by F's label head",
    "classification_weight": "D_image's auxiliary finding classifier (and G's term)",
    "report_label_head": "F's label head",
}


class Target(NamedTuple):
    """One target: ``key`` (mean over seeds) ``op`` ``factor`` x the mean of ``reference`` (None: ``factor``)."""

    key: str
    op: str
    factor: float
    reference: str | None
    wording: str


#: Targets of issue 17, computed on the ``full`` setting's mean over seeds; never lowered: a miss is stated with its
#: size. The memorisation audit (no flag in any run) is a target too, checked in :func:`evaluate_targets`.
TARGETS: tuple[Target, ...] = (
    Target("label_agreement_ratio_independent", ">=", 0.9, None, "label agreement, independent classifier"),
    Target("report_label_f1_real", ">=", 0.9, "classifier_label_f1_real", "report label F1 on real test images"),
    Target("report_label_f1", ">=", 0.9, "report_label_f1_real", "report label F1 of generated pairs"),
    Target("pair_consistency_ratio", ">=", 0.9, None, "image-report consistency of generated pairs"),
    Target("fid_ratio", "<=", 2.0, None, "FID ratio"),
    Target("distinct_2", ">=", 0.5, "distinct_2_real", "distinct-2 of generated reports"),
)
#: The limited-label settings should stay within this share of the full-label mean on these keys.
LIMITED_LABEL_TOLERANCE = 0.1
LIMITED_LABEL_KEYS: tuple[str, ...] = ("label_agreement_ratio_independent", "report_label_f1")
#: Keys compared between each limited-label setting and its ``_no_rotation`` twin.
ROTATION_KEYS: tuple[str, ...] = (
    "label_agreement_ratio_independent",
    "label_agreement_ratio",
    "report_label_f1",
    "pair_consistency_ratio",
    "fid_ratio",
)
TARGET_SETTING = "full"
RECORD_NAME = "train_record.json"
SHEET_TILE = 128


def preset_values(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What the preset enables: the training configs' values of :data:`PRESET_KEYS` and the inference configs'
    ``report_source``, each after the command's ``overrides`` (settings' own overrides are not applied)."""
    values: dict[str, Any] = {}
    for files, keys in ((TRAIN_CONFIGS, tuple(PRESET_KEYS)), (INFER_CONFIGS, ("report_source",))):
        parser = workflows.parse_config(files)
        for key in keys:
            values[key] = overrides[key] if key in overrides else parser.get(key)
    return values


def config_value(config_files: Sequence[str], key: str) -> Any:
    """The raw value of ``key`` in the merged ``config_files``."""
    return workflows.parse_config(config_files)[key]


def unknown_overrides(overrides: Mapping[str, Any]) -> list[str]:
    """The names in ``overrides`` that are ids of neither the training configs (:data:`TRAIN_CONFIGS`, nested ids
    such as ``train#trainer#max_epochs`` included) nor the inference configs (:data:`INFER_CONFIGS`): a bundle config
    takes an unknown id without complaint, so such a name is a typo that would change nothing."""
    return workflows.unknown_config_ids(overrides, (TRAIN_CONFIGS, INFER_CONFIGS))
