"""TM curve: fit TM(eps) = f_st(eps) / f_ss(eps) from a few eps and check it against a denser measured sweep (the TREND paper, Sec. 5)."""

from __future__ import annotations

import streamlit as st

import trend_ui


def choose_pair(ctx) -> tuple[str, str]:
    from trend_core.config.labels import paper_picks

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    from trend_core.service.defaults import CURVE_INPUTS

    source, target = paper_picks(names, CURVE_INPUTS)  # the paper's story: how much FP's attacks reach Q1
    left, right = st.columns(2)
    source = left.selectbox(
        "Source (attacked)", names, index=names.index(source), format_func=label_of.get, key="tc_source"
    )
    target = right.selectbox(
        "Target (evaluated)", names, index=names.index(target), format_func=label_of.get, key="tc_target"
    )
    return source, target


def choose_eps(ctx) -> dict:
    """The eps text for the fit, how many points the denser measured sweep has, PGD steps and images."""
    from trend_core.config.datasets import get_info
    from trend_core.service import defaults

    info = get_info(ctx.dataset)
    low, high = info.eps_range
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    text = c1.text_input(
        "eps to fit (3 or more)",
        defaults.curve_fit_text(ctx.dataset),
        key="tc_fit_eps",
        help=f"The paper fits from 4 eps; defaults spread over {low:g} to {high:g}.",
    )
    points = c2.number_input(
        "Measured points",
        0,
        40,
        defaults.CURVE_POINTS,
        key="tc_points",
        help="A denser sweep over the same range to check the fit against (the paper: 20).",
    )
    steps = c3.number_input("PGD steps", 1, 200, defaults.CURVE_STEPS, key="tc_steps")
    limit = c4.number_input("Test images", 1, 10_000, defaults.CURVE_IMAGES, key="tc_limit")
    return {"fit_text": text, "points": int(points), "steps": int(steps), "limit": int(limit)}


def fit_request(ctx, settings: dict) -> dict:
    """The fit's eps (parsed) and the measured sweep: ``points`` eps evenly over the dataset's range (stretched
    to the largest fit eps), for ``submit_tm_fit``."""
    from trend_core.service.defaults import curve_fit_request

    return curve_fit_request(
        ctx.dataset, settings["fit_text"], settings["points"], settings["steps"], settings["limit"]
    )


def show_fit(result: dict) -> None:
    from trend_core.plots.curve import tm_curve_figure

    pair = f"{result['source']} → {result['target']}"
    st.subheader(f"TM(eps) of {pair}")
    for warning in result["warnings"]:
        st.warning(warning)
    p = result["params"]
    st.caption(
        f"Fitted from {len(result['fit_eps'])} eps (diamonds): f_st = {p['a_st']:.1f} (1 - exp({p['b_st']:.2f} "
        f"eps)), f_ss = {p['a_ss']:.1f} (1 - exp({p['b_ss']:.2f} eps)); circles are the other measured points. "
        f"Attack: {result['attack']}."
    )
    st.plotly_chart(
        tm_curve_figure(result["curve"], result["measured"], result["fit_eps"], title=pair),
        width="stretch",
        key="tc_curve",
    )
    st.markdown("**Fit error** (the paper's Table VII: RMSE of predicted against measured TM; the paper finds < 5%)")
    st.dataframe(
        result["rmse"],
        hide_index=True,
        width="stretch",
        column_config={
            "rmse": st.column_config.NumberColumn(format="%.4f"),
            "max_abs_error": st.column_config.NumberColumn("max |error|", format="%.4f"),
        },
    )
    st.markdown("**Measured points** and the fitted TM at each")
    st.dataframe(result["measured"], hide_index=True, width="stretch")
    stem = f"tm-curve-{result['source']}-{result['target']}"
    st.markdown("**Download the measured points**")
    trend_ui.download_frame(result["measured"], stem + "-measured", key="tc_dl_measured")
    st.markdown("**Download the fitted curves** (a dense eps grid)")
    trend_ui.download_frame(result["curve"], stem + "-fit", key="tc_dl_fit")


def main() -> None:
    from trend_core.service.curve import submit_tm_fit

    trend_ui.page_intro(
        "TM curve",
        "How does transferability change with the attack's strength? Fit f_st and f_ss "
        "as a(1 - exp(b eps)) from a few eps, predict TM(eps) = f_st / f_ss anywhere in between, and "
        "check the prediction against a denser measured sweep (the TREND paper, Sec. 5, Table VII).",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 2, "A TM curve needs"):
        return
    with st.container(border=True):
        source, target = choose_pair(ctx)
        settings = choose_eps(ctx)
        launch = st.button("Measure and fit", type="primary", icon=":material/play_arrow:", key="tc_run")
    if launch:
        with trend_ui.launching("The TM(eps) fit", "tm-fit"):
            job = submit_tm_fit(
                ctx.zoo, ctx.store, source, target, device=ctx.device, profile=ctx.profile, **fit_request(ctx, settings)
            )
            trend_ui.remember_job("tm-fit", job)
    result = trend_ui.slot_result(
        "tm-fit", "Pick a source, a target and the eps to fit above, then press **Measure and fit**."
    )
    if result is not None:
        show_fit(result)


with trend_ui.guard("The TM curve page"):
    main()
