"""Memorisation audit: does the generator copy its training images (or reports)?

A generated image that sits closer to a training image than real images of the same population do is a
candidate copy. Held-out real images calibrate "close": they come from the training distribution but were not
trained on, so their nearest-training distances show how close an honest new sample gets (RoentGen section 7
compares nearest neighbours the same way).

The rule (:func:`memorisation_audit`): let ``tau`` be the ``quantile`` (5%) of the held-out images'
nearest-training distances. A generator that does not copy puts about ``quantile`` of its samples below
``tau``; the audit measures that share and a one-sided permutation p-value (generated and held-out distances
are exchangeable when nothing is copied). It flags memorisation when the share is at least ``min_ratio`` (2x)
the expected ``quantile`` *and* p < ``alpha`` (0.01): the first guards against flagging a trivial excess in a
large set, the second against chance in a small one. The same test runs on SSIM to the nearest training image
when images are given (structural copies that a feature network might miss); either flags. Report n-gram
overlap is measured and reported but does not flag: normal radiology reports repeat stock sentences, and no
held-out reports calibrate it.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.metrics import SSIMMetric

from .clinical import verbatim_copy_rate
from .image_metrics import check_unit_range
from .text_metrics import simple_tokenize

__all__ = [
    "PER_SAMPLE_KEYS",
    "NgramIndex",
    "audit_summary",
    "closest_pairs_figure",
    "memorisation_audit",
    "nearest_neighbours",
    "ngram_overlap",
    "ssim_nearest",
]

logger = logging.getLogger(__name__)

METRICS = ("cosine", "l2")
#: The audit's per-sample lists: kept in memorisation.json, left out of the run's metrics.json.
PER_SAMPLE_KEYS = ("generated_to_train", "heldout_to_train", "nearest_train", "overlap")


def _as_tensor(x: Any, what: str, ndim: int) -> torch.Tensor:
    tensor = (x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))).detach().cpu().float()
    if tensor.ndim != ndim:
        raise ValueError(f"{what} must have {ndim} dimensions, got shape {tuple(tensor.shape)}")
    if tensor.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    return tensor


# ------------------------------------------------------------------------------------------ nearest neighbours
def nearest_neighbours(
    query_features: Any,
    train_features: Any,
    metric: str = "cosine",
    k: int = 1,
    chunk_size: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k`` nearest training samples of each query by feature distance.

    Args:
        query_features: ``[Q, F]`` features (numpy or torch).
        train_features: ``[T, F]`` features.
        metric: ``"cosine"`` (1 - cosine similarity, in [0, 2]) or ``"l2"`` (Euclidean).
        k: neighbours per query.
        chunk_size: queries per ``torch.cdist`` call (memory is ``chunk_size * T`` floats).

    Returns:
        ``(distances, indices)``, both ``[Q, k]``, nearest first.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}, got {metric!r}")
    query = _as_tensor(query_features, "query_features", 2)
    train = _as_tensor(train_features, "train_features", 2)
    if query.shape[1] != train.shape[1]:
        raise ValueError(f"query and train features differ in size: {query.shape[1]} vs {train.shape[1]}")
    if not 1 <= k <= train.shape[0]:
        raise ValueError(f"k must be in 1..{train.shape[0]} (training samples), got {k}")
    if metric == "cosine":  # on unit vectors |a - b|^2 = 2 - 2 cos(a, b)
        query = torch.nn.functional.normalize(query, dim=1)
        train = torch.nn.functional.normalize(train, dim=1)
    distances, indices = [], []
    for start in range(0, query.shape[0], chunk_size):
        d = torch.cdist(query[start : start + chunk_size], train)
        if metric == "cosine":
            d = d.square() / 2
        values, index = torch.topk(d, k, dim=1, largest=False)
        distances.append(values.clamp_min(0))
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)


def _ssim_metric(win_size: int) -> SSIMMetric:
    return SSIMMetric(spatial_dims=2, data_range=1.0, win_size=win_size, reduction="none")


def ssim_nearest(
    query_images: Any,
    train_images: Any,
    top_k_by_features: Any,
    win_size: int = 7,
    batch_size: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Highest SSIM of each query image among its feature-nearest training candidates.

    SSIM against every training image would cost ``Q * T`` comparisons; the candidates (the ``[Q, k]`` indices
    from :func:`nearest_neighbours`) keep it at ``Q * k``. Images are ``[N, C, H, W]`` in [0, 1]; SSIM is
    ``monai.metrics.SSIMMetric`` with a Gaussian window of ``win_size`` px (7 fits 32 px images).

    Returns:
        ``(ssim, train_index)``, both ``[Q]``: the best SSIM and the training image it was found with.
    """
    query = _as_tensor(query_images, "query_images", 4)
    train = _as_tensor(train_images, "train_images", 4)
    candidates = torch.as_tensor(top_k_by_features).long()
    if candidates.ndim == 1:
        candidates = candidates[:, None]
    if candidates.shape[0] != query.shape[0]:
        raise ValueError(f"{candidates.shape[0]} candidate rows for {query.shape[0]} query images")
    if query.shape[1:] != train.shape[1:]:
        raise ValueError(
            f"query and train images differ in shape: {tuple(query.shape[1:])} vs {tuple(train.shape[1:])}"
        )
    if candidates.min() < 0 or candidates.max() >= train.shape[0]:
        raise ValueError(f"candidate indices must be in 0..{train.shape[0] - 1}")
    check_unit_range(query, "query_images")
    check_unit_range(train, "train_images")
    metric = _ssim_metric(win_size)
    k = candidates.shape[1]
    best, best_index = [], []
    rows = max(1, batch_size // k)
    for start in range(0, query.shape[0], rows):
        cand = candidates[start : start + rows]
        pairs_query = query[start : start + rows].repeat_interleave(k, dim=0)
        scores = metric(pairs_query, train[cand.flatten()]).reshape(-1, k)
        value, where = scores.max(dim=1)
        best.append(value)
        best_index.append(cand.gather(1, where[:, None])[:, 0])
    return torch.cat(best), torch.cat(best_index)


# ------------------------------------------------------------------------------------------ report n-grams
def _ngrams(text: str, n: int) -> set[tuple[str, ...]]:
    """Word n-grams of a report; a report shorter than ``n`` words is one gram (the whole report)."""
    words = simple_tokenize(text).split()
    if not words:
        return set()
    if len(words) < n:
        return {tuple(words)}
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


class NgramIndex:
    """Training reports indexed by word n-gram, to find a report's nearest training report by n-gram Jaccard.

    Build once and query many times: an inverted index visits only the training reports sharing an n-gram.
    """

    def __init__(self, reports: Iterable[str], n: int = 4) -> None:
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        self.n = n
        self.sizes: list[int] = []
        self.postings: dict[tuple[str, ...], list[int]] = {}
        for index, text in enumerate(reports):
            grams = _ngrams(text, n)
            self.sizes.append(len(grams))
            for gram in grams:
                self.postings.setdefault(gram, []).append(index)
        if not self.sizes:
            raise ValueError("no training reports")

    def __len__(self) -> int:
        return len(self.sizes)

    def nearest(self, report: str) -> dict[str, Any]:
        """``{"index", "jaccard", "overlap"}``: the nearest training report by n-gram Jaccard (-1 when none shares
        an n-gram), and the share of ``report``'s n-grams found in it."""
        grams = _ngrams(report, self.n)
        shared: Counter[int] = Counter()
        for gram in grams:
            shared.update(self.postings.get(gram, ()))
        if not shared:
            return {"index": -1, "jaccard": 0.0, "overlap": 0.0}
        # highest Jaccard, ties to the lowest index
        index, inter = max(
            shared.items(), key=lambda item: (item[1] / (len(grams) + self.sizes[item[0]] - item[1]), -item[0])
        )
        return {
            "index": int(index),
            "jaccard": inter / (len(grams) + self.sizes[index] - inter),
            "overlap": inter / len(grams),
        }


def ngram_overlap(report: str, train_reports: Sequence[str] | NgramIndex, n: int = 4) -> dict[str, Any]:
    """Share of ``report``'s word ``n``-grams found in its nearest training report (nearest by n-gram Jaccard).

    Returns ``{"overlap", "jaccard", "index"}``; 1.0 overlap means every n-gram of the report occurs in one
    training report. Pass an :class:`NgramIndex` to score many reports against the same training set.
    """
    index = train_reports if isinstance(train_reports, NgramIndex) else NgramIndex(train_reports, n)
    if index.n != n:
        raise ValueError(f"the NgramIndex holds {index.n}-grams, asked for n={n}")
    return index.nearest(report)


# ------------------------------------------------------------------------------------------ the audit
def _summary(values: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "q05": float(np.quantile(values, 0.05)),
        "median": float(np.median(values)),
        "max": float(values.max()),
    }


def _closer_share_test(
    gen: np.ndarray, held: np.ndarray, quantile: float, num_permutations: int, rng: np.random.Generator
) -> tuple[float, float, float]:
    """(threshold, share of ``gen`` below the held-out ``quantile``, one-sided permutation p-value)."""
    threshold = float(np.quantile(held, quantile))
    share = float(np.mean(gen < threshold))
    pooled = np.concatenate([gen, held])
    exceed, chunk = 0, 100
    for start in range(0, num_permutations, chunk):
        shuffled = rng.permuted(np.tile(pooled, (min(chunk, num_permutations - start), 1)), axis=1)
        gen_p, held_p = shuffled[:, : len(gen)], shuffled[:, len(gen) :]
        thresholds = np.quantile(held_p, quantile, axis=1, keepdims=True)
        exceed += int(np.sum(np.mean(gen_p < thresholds, axis=1) >= share))
    return threshold, share, (1 + exceed) / (1 + num_permutations)


def _flagged(share: float, p_value: float, quantile: float, min_ratio: float, alpha: float) -> bool:
    return share >= min_ratio * quantile and p_value < alpha


def memorisation_audit(
    gen_feats: Any,
    heldout_feats: Any,
    train_feats: Any,
    gen_images: Any = None,
    heldout_images: Any = None,
    train_images: Any = None,
    gen_reports: Sequence[str] | None = None,
    train_reports: Sequence[str] | None = None,
    quantile: float = 0.05,
    metric: str = "cosine",
    top_k: int = 5,
    num_pairs: int = 8,
    min_ratio: float = 2.0,
    alpha: float = 0.01,
    num_permutations: int = 1000,
    ngram: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Audit generated samples for copies of training samples (the rule is in the module docstring).

    Args:
        gen_feats, heldout_feats, train_feats: ``[N, F]`` image features from one network (generated images,
            real held-out images never trained on, training images).
        gen_images, heldout_images, train_images: optional ``[N, C, H, W]`` images in [0, 1], same order as the
            features, for the SSIM test (give all three or none).
        gen_reports, train_reports: optional report texts for the n-gram overlap and verbatim copy rate.
        quantile: the held-out distance quantile that defines "closer than real images get" (5%).
        metric: feature distance, ``"cosine"`` or ``"l2"``.
        top_k: feature-nearest training candidates searched by SSIM.
        num_pairs: closest generated/training pairs listed.
        min_ratio, alpha: the flag needs share >= ``min_ratio * quantile`` and permutation p < ``alpha``.

    Returns:
        JSON-ready dict: ``flag``, ``verdict``, ``closest_pairs`` (``[{generated, training, distance[, ssim]}]``,
        closest first), ``features`` (threshold, share_closer, p_value, flag, distance summaries and the
        per-sample ``generated_to_train`` / ``heldout_to_train`` distances and ``nearest_train`` indices),
        and when given ``ssim`` (the same on SSIM) and ``reports`` (n-gram overlap, verbatim copy rate).
    """
    if not 0 < quantile < 0.5:
        raise ValueError(f"quantile must be in (0, 0.5), got {quantile}")
    gen = _as_tensor(gen_feats, "gen_feats", 2)
    held = _as_tensor(heldout_feats, "heldout_feats", 2)
    train = _as_tensor(train_feats, "train_feats", 2)
    if held.shape[0] < 2:
        raise ValueError("heldout_feats needs at least 2 images to calibrate the threshold")
    if held.shape[0] * quantile < 1:
        logger.warning(
            "%d held-out images are too few to resolve their %.0f%% distance quantile (it falls between the two "
            "nearest); use at least %d held-out images",
            held.shape[0],
            100 * quantile,
            int(np.ceil(1 / quantile)),
        )
    images = (gen_images, heldout_images, train_images)
    if any(x is not None for x in images) and not all(x is not None for x in images):
        raise ValueError("give gen_images, heldout_images and train_images together (or none)")
    if (gen_reports is None) != (train_reports is None):
        raise ValueError("give gen_reports and train_reports together (or neither)")
    rng = np.random.default_rng(seed)
    top_k = min(top_k, train.shape[0])

    gen_d, gen_i = nearest_neighbours(gen, train, metric, k=top_k)
    held_d, held_i = nearest_neighbours(held, train, metric, k=top_k)
    d_gen, d_held = gen_d[:, 0].double().numpy(), held_d[:, 0].double().numpy()
    threshold, share, p_value = _closer_share_test(d_gen, d_held, quantile, num_permutations, rng)
    features = {
        "metric": metric,
        "threshold": threshold,
        "share_closer": share,
        "expected_share": quantile,
        "p_value": p_value,
        "flag": _flagged(share, p_value, quantile, min_ratio, alpha),
        "generated_summary": _summary(d_gen),
        "heldout_summary": _summary(d_held),
        "generated_to_train": d_gen.tolist(),
        "heldout_to_train": d_held.tolist(),
        "nearest_train": gen_i[:, 0].tolist(),
    }
    order = np.argsort(d_gen, kind="stable")[:num_pairs]
    pairs = [{"generated": int(i), "training": int(gen_i[i, 0]), "distance": float(d_gen[i])} for i in order]
    out: dict[str, Any] = {
        "quantile": quantile,
        "num_generated": gen.shape[0],
        "num_heldout": held.shape[0],
        "num_train": train.shape[0],
        "features": features,
        "closest_pairs": pairs,
    }
    verdicts = [("features", features, "sit closer to a training image than {pct} of held-out real images do")]

    if gen_images is not None:
        g_img = _as_tensor(gen_images, "gen_images", 4)
        h_img = _as_tensor(heldout_images, "heldout_images", 4)
        t_img = _as_tensor(train_images, "train_images", 4)
        for name, img, feats in (("gen", g_img, gen), ("heldout", h_img, held), ("train", t_img, train)):
            if img.shape[0] != feats.shape[0]:
                raise ValueError(f"{name}_images has {img.shape[0]} images but {name}_feats {feats.shape[0]} rows")
        s_gen, s_gen_i = ssim_nearest(g_img, t_img, gen_i)
        s_held, _ = ssim_nearest(h_img, t_img, held_i)
        s_gen_np, s_held_np = s_gen.double().numpy(), s_held.double().numpy()
        # the same test on 1 - SSIM, so "closer" means more similar
        cut, s_share, s_p = _closer_share_test(1 - s_gen_np, 1 - s_held_np, quantile, num_permutations, rng)
        ssim = {
            "threshold": 1 - cut,
            "share_above": s_share,
            "expected_share": quantile,
            "p_value": s_p,
            "flag": _flagged(s_share, s_p, quantile, min_ratio, alpha),
            "generated_summary": _summary(s_gen_np),
            "heldout_summary": _summary(s_held_np),
            "generated_to_train": s_gen_np.tolist(),
            "heldout_to_train": s_held_np.tolist(),
            "nearest_train": s_gen_i.tolist(),
        }
        metric_ssim = _ssim_metric(7)
        pair_g = torch.tensor([p["generated"] for p in pairs])
        pair_t = torch.tensor([p["training"] for p in pairs])
        for p, value in zip(pairs, metric_ssim(g_img[pair_g], t_img[pair_t]).flatten().tolist()):
            p["ssim"] = float(value)
        out["ssim"] = ssim
        verdicts.append(
            ("ssim", ssim, "are more similar (SSIM) to a training image than {pct} of held-out real images are")
        )

    if gen_reports is not None:
        index = NgramIndex(train_reports, ngram)
        nearest = [index.nearest(r) for r in gen_reports]
        overlap = np.array([m["overlap"] for m in nearest], dtype=np.float64)
        out["reports"] = {
            "n": ngram,
            "mean_overlap": float(overlap.mean()) if len(overlap) else float("nan"),
            "share_full_overlap": float(np.mean(overlap >= 1.0)) if len(overlap) else float("nan"),
            "verbatim_copy_rate": verbatim_copy_rate(gen_reports, train_reports) if len(overlap) else float("nan"),
            "overlap": overlap.tolist(),
            "nearest_train": [m["index"] for m in nearest],
        }

    out["flag"] = any(part["flag"] for _, part, _ in verdicts)
    out["verdict"] = _verdict(verdicts, quantile, out["flag"])
    return out


def _verdict(verdicts: list[tuple[str, Mapping[str, Any], str]], quantile: float, flag: bool) -> str:
    """One line: the flagged evidence (or, unflagged, the feature evidence) in words."""
    pct = f"{1 - quantile:.0%}"
    shown = [v for v in verdicts if v[1]["flag"]] if flag else verdicts[:1]
    parts = []
    for _, part, phrase in shown:
        share = part.get("share_closer", part.get("share_above"))
        parts.append(
            f"{share:.0%} of generated samples {phrase.format(pct=pct)} "
            f"({quantile:.0%} expected, permutation p={part['p_value']:.3g})"
        )
    return ("MEMORISATION SUSPECTED: " if flag else "no memorisation flag: ") + "; ".join(parts)


def audit_summary(audit: Mapping[str, Any]) -> dict[str, Any]:
    """The audit of :func:`memorisation_audit` without its per-sample lists (:data:`PER_SAMPLE_KEYS`)."""
    out: dict[str, Any] = {}
    for key, value in audit.items():
        if isinstance(value, Mapping):
            out[key] = {k: v for k, v in value.items() if k not in PER_SAMPLE_KEYS}
        else:
            out[key] = value
    return out


# ------------------------------------------------------------------------------------------ figure
def closest_pairs_figure(
    gen_images: Any,
    train_images: Any,
    pairs: Sequence[Mapping[str, Any]] | Sequence[tuple[int, int]],
    path: str | PathLike,
    max_pairs: int = 8,
    title: str | None = None,
) -> Path:
    """Save a PNG of generated images (top row) above their nearest training images (bottom row).

    ``pairs`` is ``memorisation_audit(...)["closest_pairs"]`` or ``[(generated index, training index), ...]``;
    images are ``[N, C, H, W]`` in [0, 1] (channels averaged to grey). Returns the PNG's path.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    gen = _as_tensor(gen_images, "gen_images", 4)
    train = _as_tensor(train_images, "train_images", 4)
    rows = [p if isinstance(p, Mapping) else {"generated": p[0], "training": p[1]} for p in pairs][:max_pairs]
    if not rows:
        raise ValueError("no pairs to draw")
    fig = Figure(figsize=(1.6 * len(rows) + 0.4, 3.9), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, len(rows), squeeze=False)
    for col, pair in enumerate(rows):
        caption = [f"{key} {pair[key]:.3f}" for key in ("distance", "ssim") if key in pair]
        for row, (images, index) in enumerate(((gen, pair["generated"]), (train, pair["training"]))):
            ax = axes[row][col]
            ax.imshow(images[int(index)].mean(dim=0).clamp(0, 1).numpy(), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"#{int(index)}", fontsize=7)
            if row == 1 and caption:
                ax.set_xlabel("\n".join(caption), fontsize=7)
    axes[0][0].set_ylabel("generated", fontsize=8)
    axes[1][0].set_ylabel("nearest training", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
