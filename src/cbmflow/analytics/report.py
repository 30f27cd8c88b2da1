"""The per-run HTML report: accuracy per class, confusion matrix, flags, red parcels' time series.

Plots are PNG files (matplotlib, Agg backend) beside ``index.html``; the folder may be local or
``s3://`` (written through :mod:`cbmflow.core.storage`).
"""

from __future__ import annotations

import html
import io
import logging
from typing import Any

import numpy as np
import pandas as pd

from cbmflow.analytics.features import feature_groups
from cbmflow.core import storage

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


def _rule_text(params: dict[str, Any]) -> str:
    method = params.get("flag_method", "jrc")
    if method == "budget":
        from cbmflow.analytics.flags import score_meaning

        return (f"Red: the {100 * float(params.get('red_rate', 0.05)):.0f} % most suspicious parcels "
                f"(suspicion {score_meaning(str(params.get('score', 'margin')))}) above the red floor "
                f"{params.get('red_min_score')}; yellow: the next {100 * float(params.get('yellow_rate', 0.1)):.0f} %.")
    if method == "threshold":
        return (f"Red: calibrated probability of the declared crop <= {params.get('red_max_prob')} and another "
                f"crop more probable; yellow: <= {params.get('yellow_max_prob')}.")
    return (f"Red: {params.get('red_min_agree')} independent predictions agree with each other, disagree with "
            f"the declaration, mean probability >= {params.get('red_min_prob')} (JRC rule).")


def _inspector_table(flags: pd.DataFrame, limit: int = 300) -> str:
    """Per red/yellow parcel: declared crop (code, name), best other crop, both probabilities, the reason."""
    esc = html.escape
    if "score" not in flags.columns or flags["score"].isna().all():
        return "<p>(this run has no suspicion scores: it was made before schema 009)</p>"

    def num(v: Any) -> str:
        return "" if v is None or v != v else f"{float(v):.2f}"

    sel = flags[flags["flag"] != "green"].sort_values("score", ascending=False)
    name_of: dict[str, str] = {}
    if "declared_name" in flags.columns:
        for code, nm in zip(flags["declared"].astype(str), flags["declared_name"], strict=True):
            if nm is not None and nm == nm and str(nm) != code:
                name_of.setdefault(code, str(nm))

    def crop(code: Any) -> str:
        nm = name_of.get(str(code))
        return esc(f"{code} ({nm})" if nm else str(code))

    rows = []
    for r in sel.head(limit).itertuples():
        name = getattr(r, "declared_name", r.declared)
        other = crop(r.best_other)
        pname = getattr(r, "predicted_name", None)
        if pname is not None and pname == pname and str(pname) != str(r.best_other) and "(" not in other:
            other = esc(f"{r.best_other} ({pname})")
        rows.append(
            f"<tr><td style='color:{_FLAG_COLOURS.get(str(r.flag), '#000')}'>{esc(str(r.flag))}</td>"
            f"<td>{esc(str(r.parcel_id))}</td><td>{esc(str(r.declared))}</td><td>{esc(str(name))}</td>"
            f"<td>{num(r.declared_probability)}</td><td>{other}</td>"
            f"<td>{num(r.best_other_probability)}</td><td>{num(r.score)}</td>"
            f"<td>{esc(str(r.reason))}</td><td>{evidence_html(getattr(r, 'evidence', None))}</td></tr>"
        )
    more = f"<p>{len(sel) - limit} more not shown (see the flags file).</p>" if len(sel) > limit else ""
    return ("<table><tr><th>flag</th><th>parcel</th><th>declared code</th><th>declared name</th>"
            "<th>p(declared)</th><th>best other crop</th><th>p(other)</th><th>suspicion</th><th>reason</th>"
            "<th>evidence: period, band, value (declared crop's parcels 25-75 %; best other crop's median; z)</th>"
            "</tr>" + "".join(rows) + "</table>" + more)


def evidence_html(items: Any) -> str:
    """A flag's evidence list as short lines for the report ('' without evidence, e.g. runs before schema 012)."""
    if items is None or isinstance(items, float):
        return ""
    if isinstance(items, str):
        import json

        items = json.loads(items)
    lines = []
    for it in list(items):
        pm = it.get("predicted_median")
        other = f"; other {float(pm):.2f}" if pm is not None else ""
        lines.append(html.escape(
            f"{it['period']} {it['band']} {float(it['value']):.2f} ({float(it['declared_p25']):.2f}.."
            f"{float(it['declared_p75']):.2f}{other}; z {float(it['z']):+.1f})"))
    return "<br>".join(lines)


def _curves(metrics: dict[str, Any]) -> dict[str, bytes]:
    from cbmflow.analytics.evaluation import curve_png

    out: dict[str, bytes] = {}
    sw = metrics.get("swap_evaluation")
    if sw:
        out["recall_vs_red_rate_swaps.png"] = curve_png(
            sw, f"{100 * sw['share']:.0f} % declarations swapped, {sw['seeds']} seeds, {sw['n_parcels']} parcels")
    kw = metrics.get("known_wrong_evaluation")
    if kw:
        out["recall_vs_red_rate_known.png"] = curve_png(kw, f"{kw['n_wrong']} known wrong declarations")
    return out


def _evaluation_html(metrics: dict[str, Any], curves: dict[str, bytes]) -> str:
    parts = []
    sw = metrics.get("swap_evaluation")
    if sw:
        def ms(k: str) -> str:
            return f"{sw[k]['mean']:.3f} &plusmn; {sw[k]['std']:.3f} (min {sw[k]['min']:.2f}, max {sw[k]['max']:.2f})"

        parts.append(
            f"<h2>Evaluation: {100 * sw['share']:.1f} % of declarations swapped, {sw['seeds']} seeds</h2>"
            f"<table><tr><td>swapped per seed</td><td>{sw['n_wrong_per_seed']['mean']:.1f}</td></tr>"
            f"<tr><td>red % of parcels</td><td>{ms('red_pct')}</td></tr>"
            f"<tr><td>recall of red</td><td>{ms('recall')}</td></tr>"
            f"<tr><td>precision of red</td><td>{ms('precision')}</td></tr>"
            f"<tr><td>recall of red or yellow</td><td>{ms('recall_red_or_yellow')}</td></tr>"
            f"<tr><td>recall in the top {100 * sw['at_rate']:.0f} % by suspicion</td><td>{ms('recall_at_rate')}</td></tr>"
            f"</table><p>Mean and standard deviation over seeds; with few swapped parcels per seed each one "
            f"moves the recall by 1/{max(sw['n_wrong_per_seed']['mean'], 1):.0f}.</p>"
            '<img src="recall_vs_red_rate_swaps.png" alt="recall vs red rate">'
        )
    kw = metrics.get("known_wrong_evaluation")
    if kw:
        parts.append(
            f"<h2>Evaluation against {kw['n_wrong']} known wrong declarations</h2>"
            f"<p>red {kw['red_pct']:.1f} % of parcels: recall {kw['recall']:.3f}, precision {kw['precision']:.3f}, "
            f"recall of red or yellow {kw['recall_red_or_yellow']:.3f}; "
            f"{kw['n_wrong_not_classified']} known wrong parcels were not classified.</p>"
            '<img src="recall_vs_red_rate_known.png" alt="recall vs red rate">'
        )
    return "".join(parts)


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
    curves = _curves(metrics)
    pngs.update(curves)
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
            for k, v in evaluation.items() if not isinstance(v, dict | list)
        ) + "</table>"
    ev += _evaluation_html(metrics, curves)
    red = flags[flags["flag"] == "red"].sort_values("probability", ascending=False).head(50)
    red_rows = "".join(
        f"<tr><td>{esc(str(r.parcel_id))}</td><td>{esc(str(r.declared))}</td>"
        f"<td>{esc(str(r.predicted))}</td><td>{r.probability:.2f}</td>"
        f"<td>{esc((markers or {}).get(int(getattr(r, 'pid', -1)), ''))}</td></tr>"  # activity markers
        for r in red.itertuples()
    )
    inspect = _inspector_table(flags)
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
{esc(_rule_text(params))}</p>
<img src="flag_counts.png" alt="flag counts">
<h2>Excluded parcels</h2><table>{excl}</table><ul>{msgs}</ul>
{ev}
<h2>Accuracy per class</h2><img src="accuracy_per_class.png" alt="accuracy per class">
<table><tr><th>class</th><th>parcels</th><th>accuracy</th><th>precision</th></tr>{rows}</table>
<h2>Confusion matrix</h2><img src="confusion_matrix.png" alt="confusion matrix">
<h2>Red and yellow parcels for the inspector (most suspicious first)</h2>
{inspect}
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
