"""The per-run HTML report: accuracy per class, confusion matrix, flags, red parcels' time series.

Plots are PNG files (matplotlib, Agg backend) beside ``index.html``; the folder may be local or
``s3://`` (written through :mod:`cbmflow.storage`).
"""

from __future__ import annotations

import html
import io
import logging
from typing import Any

import numpy as np
import pandas as pd

from cbmflow import storage
from cbmflow.features import feature_groups

log = logging.getLogger(__name__)

_FLAG_COLOURS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828"}


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return buf.getvalue()


def _plots(
    flags: pd.DataFrame, metrics: dict[str, Any], features: pd.DataFrame | None, n_examples: int, seed: int
) -> tuple[dict[str, bytes], list[str]]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out: dict[str, bytes] = {}
    classes = list(metrics.get("classes", []))
    per_class = metrics.get("per_class", {})

    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(classes) + 2), 3.5))
    acc = [per_class.get(c, {}).get("accuracy", 0.0) for c in classes]
    ax.bar(range(len(classes)), acc, color="#1565c0")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("out-of-fold accuracy vs declaration")
    ax.set_title("Accuracy per declared class")
    out["accuracy_per_class.png"] = _png(fig)

    conf = np.asarray(metrics.get("confusion", []), dtype=float)
    if conf.size:
        norm = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
        fig, ax = plt.subplots(figsize=(0.55 * len(classes) + 3, 0.55 * len(classes) + 2.5))
        im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
        ax.set_yticks(range(len(classes)), classes)
        ax.set_xlabel("predicted")
        ax.set_ylabel("declared")
        for i in range(len(classes)):
            for j in range(len(classes)):
                if conf[i, j]:
                    ax.text(j, i, str(int(conf[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
        fig.colorbar(im, ax=ax, fraction=0.046)
        ax.set_title("Confusion matrix (counts; colour = row fraction)")
        out["confusion_matrix.png"] = _png(fig)

    counts = metrics.get("flag_counts", {})
    fig, ax = plt.subplots(figsize=(4, 3))
    names = ["green", "yellow", "red"]
    vals = [counts.get(n, 0) for n in names]
    ax.bar(names, vals, color=[_FLAG_COLOURS[n] for n in names])
    for i, v in enumerate(vals):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set_title("Flags")
    out["flag_counts.png"] = _png(fig)

    examples: list[str] = []
    if features is not None and not flags.empty:
        groups = feature_groups(list(features.columns))
        show = [g for g in ("VH", "VV", "VHVV") if g in groups]
        red = flags[flags["flag"] == "red"]
        if show and not red.empty:
            sample = red.sample(n=min(n_examples, len(red)), random_state=seed)
            feats = features.set_index(features["parcel_id"].astype(str))
            cls_of = flags.set_index(flags["parcel_id"].astype(str))["declared_class"] \
                if "declared_class" in flags else flags.set_index(flags["parcel_id"].astype(str))["declared"]
            for _, row in sample.iterrows():
                pid = str(row["parcel_id"])
                if pid not in feats.index:
                    continue
                fig, axes = plt.subplots(1, len(show), figsize=(4.2 * len(show), 3), squeeze=False)
                for ax, g in zip(axes[0], show, strict=False):
                    cols = groups[g]
                    x = [int(c.rpartition("_p")[2]) for c in cols]
                    for cls, colour, lab in ((row.get("declared_class", row["declared"]), "#555555", "declared"),
                                             (row["predicted"], "#c62828", "predicted")):
                        members = cls_of.index[cls_of.to_numpy() == cls]
                        members = members.intersection(feats.index)
                        if len(members) == 0:
                            continue
                        vals_c = feats.loc[members, cols].to_numpy(dtype=float)
                        q25, q50, q75 = np.nanpercentile(vals_c, [25, 50, 75], axis=0)
                        ax.fill_between(x, q25, q75, color=colour, alpha=0.15)
                        ax.plot(x, q50, color=colour, lw=1, ls="--", label=f"{lab} {cls} median/IQR")
                    ax.plot(x, feats.loc[pid, cols].to_numpy(dtype=float), color="black", lw=1.6,
                            label=f"parcel {pid}")
                    ax.set_xlabel("period")
                    ax.set_title(f"{g} (dB)")
                axes[0][0].legend(fontsize=6)
                fig.suptitle(
                    f"RED {pid}: declared {row['declared']}, predicted {row['predicted']} "
                    f"(p={row['probability']:.2f})", fontsize=9, y=1.04,
                )
                name = f"red_{len(examples):02d}.png"
                out[name] = _png(fig)
                examples.append(name)
    return out, examples


def write_report(
    out_dir: str,
    flags: pd.DataFrame,
    metrics: dict[str, Any],
    features: pd.DataFrame | None = None,
    *,
    title: str = "cbmflow classification run",
    evaluation: dict[str, Any] | None = None,
    n_examples: int = 6,
    seed: int = 0,
    markers: dict[int, str] | None = None,
) -> str:
    """Write the run's HTML report and PNG plots into a folder (local or s3://); returns index.html's URI."""
    pngs, examples = _plots(flags, metrics, features, n_examples, seed)
    for name, data in pngs.items():
        storage.write_bytes(storage.join(out_dir, name), data, content_type="image/png")
    esc = html.escape
    counts = metrics.get("flag_counts", {})
    n = max(metrics.get("n_classified", 0), 1)
    rows = "".join(
        f"<tr><td>{esc(c)}</td><td>{v['support']}</td><td>{v['accuracy']:.3f}</td>"
        f"<td>{v['precision']:.3f}</td></tr>"
        for c, v in metrics.get("per_class", {}).items()
    )
    excl = "".join(
        f"<tr><td>{esc(k.replace('_', ' '))}</td><td>{v}</td></tr>"
        for k, v in metrics.get("excluded", {}).items()
    )
    msgs = "".join(f"<li>{esc(m)}</li>" for m in metrics.get("messages", []))
    ev = ""
    if evaluation:
        ev = "<h2>Evaluation against known truth</h2><table>" + "".join(
            f"<tr><td>{esc(k)}</td><td>{v:.3f}</td></tr>" if isinstance(v, float)
            else f"<tr><td>{esc(k)}</td><td>{esc(str(v))}</td></tr>"
            for k, v in evaluation.items()
        ) + "</table>"
    red = flags[flags["flag"] == "red"].sort_values("probability", ascending=False).head(50)
    red_rows = "".join(
        f"<tr><td>{esc(str(r.parcel_id))}</td><td>{esc(str(r.declared))}</td>"
        f"<td>{esc(str(r.predicted))}</td><td>{r.probability:.2f}</td>"
        f"<td>{esc((markers or {}).get(int(getattr(r, 'pid', -1)), ''))}</td></tr>"  # activity markers
        for r in red.itertuples()
    )
    params = metrics.get("params", {})
    doc = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:left}}img{{max-width:100%}}</style></head>
<body><h1>{esc(title)}</h1>
<p>{metrics.get('n_classified', 0)} parcels classified into {len(metrics.get('classes', []))} classes
with {esc(str(params.get('estimator')))}, {params.get('n_repeats')} x {params.get('n_splits')}-fold
out-of-fold predictions; accuracy against the declarations {metrics.get('accuracy', 0.0):.3f}.</p>
<h2>Flags</h2>
<p>green {counts.get('green', 0)} ({100 * counts.get('green', 0) / n:.1f} %),
yellow {counts.get('yellow', 0)} ({100 * counts.get('yellow', 0) / n:.1f} %),
red {counts.get('red', 0)} ({100 * counts.get('red', 0) / n:.1f} %).
Red: {params.get('red_min_agree')} independent predictions agree with each other, disagree with the
declaration, mean probability &ge; {params.get('red_min_prob')}.</p>
<img src="flag_counts.png" alt="flag counts">
<h2>Excluded parcels</h2><table>{excl}</table><ul>{msgs}</ul>
{ev}
<h2>Accuracy per class</h2><img src="accuracy_per_class.png" alt="accuracy per class">
<table><tr><th>class</th><th>parcels</th><th>accuracy</th><th>precision</th></tr>{rows}</table>
<h2>Confusion matrix</h2><img src="confusion_matrix.png" alt="confusion matrix">
<h2>Red parcels (sample) against their declared class</h2>
{''.join(f'<p><img src="{e}" alt="{e}"></p>' for e in examples) or '<p>no red parcels or no time series</p>'}
<h2>Red parcels (top 50 by probability)</h2>
<table><tr><th>parcel</th><th>declared</th><th>predicted</th><th>probability</th><th>activity markers</th></tr>
{red_rows}</table>
</body></html>
"""
    uri = storage.join(out_dir, "index.html")
    storage.write_bytes(uri, doc.encode("utf-8"), content_type="text/html")
    log.info("report written to %s", uri)
    return uri
