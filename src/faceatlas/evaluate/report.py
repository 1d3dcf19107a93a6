"""Evaluation reports: one JSON for machines, PNG plots (ROC, DET, score histograms, CMC) and a Markdown summary."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import FaceAtlasError
from .metrics import roc_curve
from .runner import IdentificationResult, VerificationResult

log = logging.getLogger(__name__)


def write_report(
    out: Path,
    title: str,
    meta: dict[str, Any],
    verification: VerificationResult | None = None,
    identification: IdentificationResult | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``report.json``, the plots and ``summary.md`` into ``out``; return the written paths."""
    out.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"title": title, **meta}
    if verification is not None:
        data["verification"] = verification.summary
    if identification is not None:
        data["identification"] = identification.summary
    if extra:
        data.update(extra)
    paths = {"json": out / "report.json"}
    paths["json"].write_text(json.dumps(data, indent=2, default=_jsonable))
    paths.update(_plots(out, verification, identification))
    paths["summary"] = out / "summary.md"
    paths["summary"].write_text(_markdown(title, data, paths))
    return paths


def _jsonable(x: Any) -> Any:
    """Convert numpy scalars for json.dumps."""
    if isinstance(x, (np.floating, np.integer)):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


def _plots(out: Path, ver: VerificationResult | None, ident: IdentificationResult | None) -> dict[str, Path]:
    """Render the PNG plots with matplotlib's non-interactive backend."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise FaceAtlasError("missing_dependency", "plots need matplotlib: pip install 'faceatlas[eval]'") from None
    paths: dict[str, Path] = {}
    if ver is not None:
        ok = ~ver.failed
        roc = roc_curve(ver.scores[ok], ver.labels[ok])
        fig, ax = plt.subplots(figsize=(5, 4))
        ax.plot(roc.fpr, roc.tpr)
        ax.set(xscale="log", xlim=(max(1e-4, 1.0 / max(1, (~ver.labels).sum())), 1), ylim=(0.8, 1.001),
               xlabel="false accept rate", ylabel="true accept rate", title="ROC")
        ax.grid(True, which="both", alpha=0.3)
        paths["roc"] = _save(fig, out / "roc.png")
        fig, ax = plt.subplots(figsize=(5, 4))
        fnmr = 1 - roc.tpr
        keep = (roc.fpr > 0) & (fnmr > 0)  # zero rates have no place on log axes (and are not measured values)
        if keep.any():
            ax.plot(roc.fpr[keep], fnmr[keep])
            ax.set(xscale="log", yscale="log")
            _decade_ticks(ax.xaxis, roc.fpr[keep], ax.set_xlim)
            _decade_ticks(ax.yaxis, fnmr[keep], ax.set_ylim)
        else:
            ax.text(0.5, 0.5, "no threshold gives both kinds of error", ha="center", va="center", transform=ax.transAxes)
        ax.set(xlabel="false match rate", ylabel="false non-match rate", title="DET")
        ax.grid(True, which="both", alpha=0.3)
        paths["det"] = _save(fig, out / "det.png")
        fig, ax = plt.subplots(figsize=(5, 4))
        bins = [float(x) for x in np.linspace(-0.4, 1.0, 71)]
        ax.hist(ver.scores[ok & ver.labels], bins=bins, alpha=0.6, label="genuine", density=True)
        ax.hist(ver.scores[ok & ~ver.labels], bins=bins, alpha=0.6, label="impostor", density=True)
        thr = ver.summary.get("threshold_mean")
        if thr is not None:
            ax.axvline(thr, color="k", ls="--", lw=1, label=f"threshold {thr:.3f}")
        ax.set(xlabel="cosine score", ylabel="density", title="Score distributions")
        ax.legend()
        paths["hist"] = _save(fig, out / "scores.png")
    if ident is not None:
        fig, ax = plt.subplots(figsize=(5, 4))
        ranks = np.arange(1, len(ident.cmc) + 1)
        ax.plot(ranks, ident.cmc, marker="o", ms=3)
        ax.set(xlabel="rank", ylabel="identification rate", title="CMC", xticks=ranks[::2])
        ax.grid(True, alpha=0.3)
        paths["cmc"] = _save(fig, out / "cmc.png")
    return paths


def _decade_ticks(axis: Any, values: Any, set_lim: Any) -> None:
    """A log axis spanning whole decades, labelled only at powers of ten (at most six labels, never crowded)."""
    from matplotlib.ticker import LogFormatterMathtext, LogLocator, NullFormatter

    lo = int(np.floor(np.log10(float(np.min(values)))))
    hi = max(int(np.ceil(np.log10(float(np.max(values))))), lo + 1)
    hi = min(hi, 0) if lo < 0 else hi  # rates never exceed 1
    set_lim(10.0**lo, 10.0**hi)
    step = max(1, -(-(hi - lo) // 5))  # every decade, or every other one on long axes
    axis.set_major_locator(LogLocator(base=10.0 ** step if step > 1 else 10.0))
    axis.set_major_formatter(LogFormatterMathtext())
    axis.set_minor_locator(LogLocator(base=10.0, subs=tuple(range(2, 10)), numticks=100))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: Path) -> Path:
    """Save and close a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def _pct(x: Any) -> str:
    """Format a rate as a percentage (or n/a)."""
    return "n/a" if x is None else f"{100 * float(x):.2f} %"


def _markdown(title: str, data: dict[str, Any], paths: dict[str, Path]) -> str:
    """A short human summary that embeds the plots."""
    lines = [f"# {title}", ""]
    for key in ("model_id", "detector", "select", "data", "images", "embed_seconds", "embedded_now",
                "seconds_per_image", "seconds_per_image_from"):
        if key in data:
            lines.append(f"- **{key}**: {data[key]}")
    ver = data.get("verification")
    if ver:
        lines += ["", "## Verification", ""]
        if "accuracy_mean" in ver:
            lines.append(
                f"- accuracy (threshold from the other folds): **{100 * ver['accuracy_mean']:.2f} ± "
                f"{100 * ver['accuracy_std']:.2f} %** over {len(ver['fold_accuracies'])} folds"
            )
        if "accuracy_at_threshold" in ver:
            lines.append(
                f"- at the fixed threshold {ver['threshold']:.4f}: accuracy {_pct(ver['accuracy_at_threshold'])}, "
                f"FMR {_pct(ver['fmr_at_threshold'])}, FNMR {_pct(ver['fnmr_at_threshold'])}"
            )
        lines.append(f"- ROC AUC {ver['roc_auc']:.5f}, EER {_pct(ver['eer'])}")
        for far, t in ver["tar_at_far"].items():
            lines.append(f"- TAR @ FAR {far}: {_pct(t['tar'])}" + (f" ({t['note']})" if t["note"] else ""))
        lines.append(
            f"- pairs: {ver['pairs']} ({ver['genuine']} genuine, {ver['impostor']} impostor); "
            f"pairs with a face not found: {ver['failed_to_detect_pairs']} (counted as errors)"
        )
        mis = ver.get("misclassified", [])
        if mis:
            lines += ["", f"Misclassified pairs ({len(mis)}):", ""]
            lines += [f"- {m['a']} vs {m['b']} (same={m['same']}, score {m['score']})" for m in mis[:50]]
    ident = data.get("identification")
    if ident:
        lines += [
            "",
            "## Identification",
            "",
            f"- gallery {ident['gallery']}, known probes {ident['known_probes']}, unknown probes {ident['unknown_probes']}",
            f"- rank-1 **{_pct(ident['rank1'])}**, rank-5 {_pct(ident['rank5'])}",
        ]
        for fpir, d in ident["dir_at_fpir"].items():
            lines.append(f"- DIR @ FPIR {fpir}: {_pct(d['dir'])}")
    groups = data.get("groups")
    if groups:
        lines += ["", f"## Groups (threshold {groups['threshold']:.4f})", "", "| group | FMR | FNMR | genuine | impostor |",
                  "|---|---|---|---|---|"]
        for g, v in groups["groups"].items():
            lines.append(f"| {g} | {_pct(v['fmr'])} | {_pct(v['fnmr'])} | {v['genuine_pairs']} | {v['impostor_pairs']} |")
        lines.append("")
        lines.append(f"FMR worst/best: {groups.get('fmr_worst_to_best')}; FNMR worst/best: {groups.get('fnmr_worst_to_best')}")
    lines += [""] + [f"![{k}]({p.name})" for k, p in paths.items() if p.suffix == ".png"]
    return "\n".join(lines) + "\n"
