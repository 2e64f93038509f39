"""Robustness audit: adaptive attacks on one model or a majority-vote ensemble, and flags that say whether its
robustness is real (Athalye et al. 2018; Croce & Hein 2020)."""

from __future__ import annotations

import streamlit as st

import trend_ui


def choose_target(ctx) -> tuple[list[str], bool]:
    """The model or the vote's members; by default the paper's FP, Q1 and Q2 (fully trained ones first), not the
    zoo's first models in name order."""
    from trend_core.service.defaults import AUDIT_MEMBERS, audit_picks

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    picks = audit_picks(metas)
    ensemble = st.toggle("Audit a majority-vote ensemble", value=len(names) >= AUDIT_MEMBERS, key="au_ensemble")
    if ensemble:
        chosen = st.multiselect(
            "Ensemble members (two or more)",
            names,
            default=picks[:AUDIT_MEMBERS],
            format_func=label_of.get,
            key="au_members",
        )
    else:
        chosen = [
            st.selectbox(
                "Model", names, index=names.index(picks[0]) if picks else 0, format_func=label_of.get, key="au_model"
            )
        ]
    return chosen, ensemble


def choose_settings(ctx) -> dict:
    from trend_core.config.datasets import get_info
    from trend_core.service import defaults

    info = get_info(ctx.dataset)
    high = float(round(3 * info.default_eps, 4))
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    low_eps, high_eps = c1.slider(
        "eps range (L-inf, pixel units)",
        0.0,
        high,
        defaults.audit_eps_range(ctx.dataset),
        step=float(round(info.default_eps / 20, 5)),
        format="%.4f",
        key="au_eps",
        help="The audit also runs APGD-CE and Square at eps 0.5, where nothing should stay robust.",
    )
    points = c2.number_input("eps values", 1, 6, defaults.AUDIT_POINTS, key="au_points")
    level = c3.radio(
        "Battery",
        ["quick", "thorough"],
        key="au_level",
        horizontal=True,
        help="thorough: twice the APGD steps, 3 restarts, 5x the Square queries, every other zoo "
        "model as a transfer surrogate",
    )
    total = trend_ui.count_test_images(ctx.dataset)
    limit = c4.number_input("Test images", 1, total, min(defaults.AUDIT_IMAGES, total), key="au_limit")
    return {
        "epsilons": defaults.audit_eps(low_eps, high_eps, int(points), info.default_eps),
        "level": level,
        "limit": int(limit),
    }


# Each sanity flag as the check it makes, worded so that "passed" reads right (a green mark beside
# "not_converged" said the opposite of what it meant).
CHECKS = {
    "gradient_masking": "No sign of gradient masking",
    "large_eps_not_zero": "Nothing stays robust at eps 0.5",
    "not_monotone": "Robust accuracy falls as eps grows",
    "not_converged": "APGD has converged",
    "bpda_identity_stronger": "Other backward passes are no stronger",
}


def show_flags(flags: list[dict]) -> None:
    for flag in flags:
        check = CHECKS.get(flag["name"], flag["name"])
        if flag["fired"]:
            st.warning(f"**{check}: no** (flag `{flag['name']}` fired). {flag['sentence']}", icon=":material/flag:")
        else:
            st.success(f"**{check}: yes.** {flag['sentence']}", icon=":material/check_circle:")


def show_report(result: dict) -> None:
    from trend_core.plots.audit import robust_accuracy_figure

    meta, robust, worst = result["meta"], result["robust"], result["worst_case"]
    label_of = trend_ui.zoo_label_map(trend_ui.context().models(), meta["models"])  # as the pickers say
    labels = [label_of[n] for n in meta["models"]]
    what = "majority vote of " + " + ".join(labels) if meta["ensemble"] else labels[0]
    st.subheader(f"Audit of the {what}")
    st.caption(
        f"{meta['n_images']} test images, clean accuracy {meta['clean_accuracy']:.1%}, {meta['level']} "
        "battery. Robust accuracy: the share of images classified correctly on the clean image and after the "
        "attack (an ensemble: expected over its random tie-break). Worst case: an image counts only if it "
        "survives every attack."
    )
    from trend_core.experiments.audit_flags import SANITY_EPS

    focus = [float(e) for e in worst["eps"] if float(e) != SANITY_EPS] or None  # the chosen range, not eps 0.5
    st.plotly_chart(robust_accuracy_figure(robust, worst, focus=focus), width="stretch", key="au_chart")
    table = robust.pivot_table(index="attack", columns="eps", values="robust_accuracy", sort=False)
    table.loc["worst case (every attack)"] = worst.set_index("eps")["robust_accuracy"]
    percent = {c: st.column_config.NumberColumn(f"eps {c:g}", format="percent") for c in table.columns}
    st.dataframe(table, width="stretch", column_config=percent)
    st.markdown("**Sanity flags**")
    show_flags(result["flags"])
    for note in meta.get("notes", []):
        st.info(note)
    trend_ui.download_frame(robust, "audit-robust-accuracy", key="au_dl_robust")


def main() -> None:
    from trend_core.service.audit import submit_audit

    trend_ui.page_intro(
        "Robustness audit",
        "Is a model's or an ensemble's robustness real, or an artefact of a weak "
        "attack? Input quantization, halftoning and majority votes are the defences whose robustness "
        "gradient attacks overstate. The audit runs APGD (cross-entropy and DLR losses, averaged over "
        "the vote's tie-breaks), APGD through other backward passes of the input transform (BPDA), "
        "the gradient-free Square attack and transfer from other zoo models, and flags the signs of "
        "masked gradients.",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 1, "An audit needs at least"):
        return
    shown = trend_ui.recalled_job("audit", kind="audit")
    with st.expander("What to audit", expanded=shown is None, icon=":material/tune:"):  # results stay in view
        names, ensemble = choose_target(ctx)
        settings = choose_settings(ctx)
    launch = st.button("Run the audit", type="primary", icon=":material/policy:", key="au_run")
    if launch:
        with trend_ui.guard("The audit"):
            job = submit_audit(ctx.zoo, ctx.store, names, ensemble=ensemble, device=ctx.device, **settings)
            trend_ui.remember_job("audit", job)
            if shown is None:  # draw again with the settings folded, so the run's progress and results are in view
                st.rerun()
    result = trend_ui.slot_result(
        "audit", "Pick a model (or an ensemble's members) and an eps range above, then press **Run the audit**."
    )
    if result is not None:
        with trend_ui.guard("The audit results"):
            show_report(result)


with trend_ui.guard("The Audit page"):
    main()
