"""The model card's sections on the fusion rule: how the experts combine, how each is calibrated, and the
product rule against learned weights on every real evaluation of the reproduce run."""

from __future__ import annotations

from typing import Any

from training.recipe import SPEAKER_CORPORA

SET_ORDER = ("t", "a", "v", "tv", "av", "ta", "tav")


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _gain(gains: dict[str, float], c: str) -> str:
    return "–" if c not in gains else f"{100 * gains[c]:+.1f}"


def rule_section(cal: dict[str, Any]) -> list[str]:
    rules = cal.get("rules")
    if not rules:
        return []
    prod, learned = rules["product"], rules["learned"]
    prior = prod["prior"]
    names = ("ang", "hap", "neu", "sad")
    lines = [
        "",
        "## How the experts are fused",
        "",
        f"Rule in force: **{rules['default']}** (engine `fusion.rule=checkpoint`; `fusion.rule=learned` or "
        "`product` selects the other, in the same exported graph). No corpus here pairs a face with a voice "
        "of the same moment, so each modality's evidence is taken as independent given the emotion:",
        "",
        "    p(y | t, a, v)  ~  prior(y) * prod_m  [p_m(y | x_m) / prior_m(y)] ^ w_m",
        "",
        "over the available experts m, each calibrated on its own data (below), with the target prior "
        "uniform. The exponent w_m is 1 unless real paired validation data fits less (the table below; "
        "only speech with its own words is a real pair here). `prior_m` is the class balance each "
        "expert's posterior carries: "
        f"**{prior['chosen']}** is shipped ("
        "`train`: the speech and text heads are fitted class-balanced, so uniform, and the face model "
        "carries FER2013's balance; `uniform`: a plain product of the posteriors).",
        "",
        "| expert prior | " + " | ".join(names) + " |",
        "|---|---|---|---|---|",
        *[f"| {m} | " + " | ".join(f"{v:.3f}" for v in p) + " |" for m, p in prior["priors"].items()],
        "",
        "| choice | validation UAR, real samples (mean over entries) | all entries, synthetic face pairs "
        "too |",
        "|---|---|---|",
        *[f"| divide out `{w}` | {_pct(prior[w]['val_uar_real'])} | {_pct(prior[w]['val_uar_all'])} |"
          for w in ("train", "uniform")],
        "",
        "CM-ARR's attention and reconstruction path is a residual on the product, weighted per availability "
        "set and kept only where it raises validation UAR on **real** samples by at least "
        f"{_pct(cal.get('attention_min_gain', 0.0))} points. The sets with a face next to another modality "
        "are scored here only on synthetic pairs (a speech sample with a FER2013 still of another person), "
        "so the path is off there: the reading is the product of the experts. It stays in the graph for "
        "a retraining on a paired corpus (IEMOCAP, MSP-IMPROV, CREMA-D videos).",
        "",
        "The learned rule (for comparison) fits the attention path's weight and each expert's weight per set "
        "on every validation entry, synthetic pairs included (stacking).",
        "",
        "| set | product: expert exponents | residual gate | its validation gain (real) | learned: "
        "attention gate | its gain | learned expert weights |",
        "|---|---|---|---|---|---|---|",
    ]
    pw = prod.get("expert_weights", {}).get("weights", {})
    pg, pgain = prod["deep_gates"], prod["attention_uar_gain"]
    lg, lgain, lw = learned["deep_gates"], learned["attention_uar_gain"], learned["expert_weights"]
    for c in SET_ORDER:
        w = ", ".join(f"{m} {v:.2f}" for m, v in lw.get(c, {}).items()) or "as trained (no validation data)"
        ex = ", ".join(f"{m} {v:.2f}" for m, v in pw.get(c, {}).items()) or "–"
        lines.append(
            f"| {c} | {ex} | {pg.get(c, 0.0):.2f} | {_gain(pgain, c)} | {lg.get(c, 0.0):.2f} | "
            f"{_gain(lgain, c)} | {w} |"
        )
    lines += [
        "",
        f"Validation UAR on real samples (mean over entries): product {_pct(prod['val_uar_real'])}, "
        f"learned {_pct(learned['val_uar_real'])}.",
    ]
    return lines


def _floor(e: dict[str, Any]) -> str:
    return f"{e['ece_floor']:.3f} / {e['ece_floor_p95']:.3f}" if "ece_floor" in e else "–"


def _p(e: dict[str, Any]) -> str:
    return f"{e['p_calibrated']:.2f}" if "p_calibrated" in e else "–"


def _ece_text(v: float | dict[str, Any]) -> str:
    """A fused ECE entry: a plain float (cards written before the floor) or the entry with its floor."""
    if isinstance(v, dict):
        return f"{v['ece']:.3f} ({_floor(v)})"
    return f"{v:.3f}"


def calibration_section(cal: dict[str, Any], test: dict[str, Any] | None) -> list[str]:
    experts = cal.get("experts")
    if experts is None:
        return []
    lines = [
        "",
        "## Each expert's calibration, on its own validation data",
        "",
        "Speech: held-out RAVDESS/EmoDB speakers; text: MELD dev; face: FER2013 PublicTest windows, each "
        "still through the engine's face path in several views and pooled as the engine pools a window's "
        "frames (mean of the frame probabilities), temperature fitted on those windows.",
        "",
        "ECE is biased upward on small sets. Next to each ECE: the ECE that a perfectly calibrated model "
        "with the same probabilities shows at the same size (labels drawn from its own probabilities, 200 "
        "draws: mean and 95th percentile), and the share of those draws that read at least the measured "
        "ECE (p; under 0.05 is evidence of miscalibration).",
        "",
        "| validation entry | expert | n | UAR | ECE | calibrated at this n: mean / p95 | p |",
        "|---|---|---|---|---|---|---|",
        *[f"| {k} | {e['expert']} | {e['n']} | {_pct(e['uar'])} | {e['ece']:.3f} | {_floor(e)} | "
          f"{_p(e)} |" for k, e in sorted(experts.items())],
        "",
        "Fused ECE per validation entry (after the temperature; in brackets the calibrated floor at that "
        "size, mean / p95): "
        + ", ".join(f"{k} {_ece_text(v)}" for k, v in sorted(cal.get("fused_val_ece", {}).items())) + ".",
    ]
    if test:
        lines += [
            "Fused ECE per test entry: "
            + ", ".join(f"{k} {e['ece_after']:.3f}" + (f" ({_floor(e)})" if "ece_floor" in e else "")
                        for k, e in test["entries"].items()) + "."
        ]
    spread = cal.get("text_spread", {})
    if spread:
        ta = (cal.get("rules", {}).get("product", {}).get("expert_weights", {}).get("weights", {})
              .get("ta", {}))
        lines += [
            "",
            "**Text next to speech.** The only real pairs of words with a voice here are the acted speech "
            "corpora, which say the same two (RAVDESS) or ten (EmoDB) emotionally neutral sentences in "
            "every emotion; their words carry nothing, which is not true of a call. The text expert is "
            "trained class-balanced within each corpus (so on those sentences it learns to answer near the "
            "prior) and calibrated on MELD dev. Next to speech its exponent was fitted on the real pairs "
            "(held-out speakers) by NLL, then kept only where it raised validation UAR by at least "
            f"{_pct(cal.get('attention_min_gain', 0.0))} points over leaving the words out, the rule the "
            f"attention path follows: text {ta.get('text', 1.0):.2f}, speech {ta.get('audio', 1.0):.2f}. "
            "Text keeps that exponent wherever its words meet another expert (with a face too); text alone "
            "keeps weight 1. The words still reach every event (transcript, text expert reading). On calls, "
            "where words carry the emotion too, `--set fusion.text_weight=1` lets them count fully, and a "
            "retraining on labelled calls would fit it. How far the text "
            "expert strays from the uniform prior:",
            "",
            "| validation words | text expert: mean KL to uniform (nats) | mean top probability |",
            "|---|---|---|",
            *[f"| {c} ({'scripted, spoken' if s['scripted'] else 'dialogue'}) | {s['kl_to_uniform']:.3f} | "
              f"{s['mean_top_prob']:.3f} |" for c, s in sorted(spread.items())],
        ]
    return lines


def comparison_section(report: dict[str, Any], test: dict[str, Any] | None) -> list[str]:
    """Product against learned on the test splits, the speaker folds and the live engine."""
    lines = ["", "## The product rule against learned weights, same checkpoint", ""]
    if test and any("rules" in e for e in test["entries"].values()):
        lines += [
            "Test splits (UAR):",
            "",
            "| corpus.condition | product | learned | best single expert |",
            "|---|---|---|---|",
        ]
        for key, e in test["entries"].items():
            r = e.get("rules", {})
            best = e.get("best_expert")
            b = f"{best} {_pct(e['experts'][best]['uar'])}" if best else "–"
            lines.append(f"| {key} | {_pct(r.get('product', {}).get('uar'))} | "
                         f"{_pct(r.get('learned', {}).get('uar'))} | {b} |")
    cv = report.get("cv")
    if cv:
        lines += [
            "",
            "Held-out speakers (mean UAR over the folds):",
            "",
            "| corpus.condition | product | learned | best single expert |",
            "|---|---|---|---|",
        ]
        for key, a in cv["aggregate"].items():
            if key.split(".")[0].split("+")[0] not in SPEAKER_CORPORA:
                continue  # the folds' other test entries repeat the final model's splits
            r = a.get("rules_uar_mean", {})
            ex = a.get("experts_uar_mean", {})
            best = max(ex, key=ex.get) if ex else None
            lines.append(f"| {key} | {_pct(r.get('product'))} | {_pct(r.get('learned'))} | "
                         f"{f'{best} {_pct(ex[best])}' if best else '–'} |")
    other = report.get("engine_other_rule")
    if other:
        rule = other["rule"]
        lines += [
            "",
            "The live engine on the bundled CREMA-D clips (WAR / UAR):",
            "",
            f"| tracks | {'product' if rule == 'learned' else 'learned'} (shipped) | {rule} |",
            "|---|---|---|",
        ]
        for tracks, key in (("all", "engine_cremad"), ("video", "engine_cremad_video"),
                            ("audio", "engine_cremad_audio")):
            a, b = report.get(key, {}).get("overall"), other.get(tracks, {}).get("overall")
            if a and b:
                lines.append(f"| {tracks} (n = {a['n']}) | {_pct(a['war'])} / {_pct(a['uar'])} | "
                             f"{_pct(b['war'])} / {_pct(b['uar'])} |")
    return lines


def mosi_section(report: dict[str, Any]) -> list[str]:
    mosi = report.get("mosi")
    if not mosi:
        return []
    return [
        "",
        "## CM-ARR's own reconstruction, where real pairs exist (CMU-MOSI)",
        "",
        "The one corpus here with all three modalities of the same moment is CMU-MOSI (binary sentiment, "
        "utterance features; `benchmarks/mosi.py`, speaker-independent split). CM-ARR trained with missing "
        "modalities (reconstructing them) against the same model trained on full data only and a logistic "
        "regression per condition, test accuracy / UAR / weighted F1:",
        "",
        mosi["markdown"],
    ]


def speech_calibration_section(report: dict[str, Any]) -> list[str]:
    """The speech expert on every held-out speaker (out of fold) and on a corpus it never heard
    (``training.evaluation.speech_calibration``)."""
    sc = report.get("speech_calibration")
    if not sc:
        return []
    title = "## The speech expert on speakers and corpora it never heard"
    if "error" in sc:
        return ["", title, "", f"Not measured: {sc['error']}."]
    oof, cross = sc["out_of_fold"], sc["across_corpora"]
    lines = [
        "",
        title,
        "",
        "Each speech utterance read once by a head fitted as the recipe fits it (C chosen and temperature "
        "fitted on its own validation speakers) that never heard its speaker: out of fold over the "
        "leave-speakers-out folds, and across corpora (a head fitted on one corpus reads every speaker of "
        "the other). `python -m training.speech_calibration --store FEATURES` writes the same.",
        "",
        "| readings | n | UAR | ECE, T = 1 | ECE, the recipe's T | calibrated at this n: mean / p95 | p |",
        "|---|---|---|---|---|---|---|",
    ]
    for key in [k for k in ("ravdess", "emodb", "all") if k in oof]:
        none, val = oof[key]["none"], oof[key]["val"]
        lines.append(
            f"| out of fold, {key} | {val['n']} | {_pct(val['uar'])} | {none['ece']:.3f} | "
            f"{val['ece']:.3f} | {_floor(val)} | {_p(val)} |"
        )
    for key, d in cross.items():
        none, val = d["none"], d["val"]
        lines.append(
            f"| {key} | {val['n']} | {_pct(val['uar'])} | {none['ece']:.3f} | {val['ece']:.3f} | "
            f"{_floor(val)} | {_p(val)} |"
        )
    fitted = {k: d["fitted_on_target"]["temperature"] for k, d in cross.items() if "fitted_on_target" in d}
    if fitted:
        lines += [
            "",
            "Temperature that would calibrate the head on the other corpus (fitted there, for this table "
            "only): " + ", ".join(f"{k} {t:.1f}" for k, t in fitted.items()) + ".",
        ]
    if "all" in oof and fitted:
        val = oof["all"]["val"]
        sure = [cross[k]["val"]["mean_top_prob"] for k in fitted]
        right = [cross[k]["val"]["uar"] for k in fitted]
        lines += [
            "",
            "On held-out speakers of the corpora it was fitted on, the speech expert reads ECE "
            f"{val['ece']:.3f} (a calibrated model reads {val['ece_floor']:.3f} at n = {val['n']}). On a "
            f"corpus it never heard it is right on {_pct(min(right))}-{_pct(max(right))}% (UAR) while its "
            f"top probability averages {min(sure):.2f}-{max(sure):.2f}: in the product its mistakes there "
            "weigh as much as its right answers.",
        ]
    return lines
