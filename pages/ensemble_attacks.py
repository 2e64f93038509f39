"""Ensemble attacks: D-AG, EMPIR, U-GD and A-GD against a majority-vote ensemble, and gradient domination (the TREND paper, Sec. 6)."""

from __future__ import annotations

import streamlit as st

import trend_ui

GALLERY_SIZE = 24


def choose_members(ctx) -> list[str]:
    """The members; by default the paper's headline ensemble FP + Q1 + Q2 (others where the zoo lacks them)."""
    from trend_core.config.labels import paper_picks
    from trend_core.service.defaults import ENSEMBLE_INPUTS

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    return st.multiselect(
        "Ensemble members (two or more; the ensemble decides by majority vote)",
        names,
        default=paper_picks(names, ENSEMBLE_INPUTS),
        format_func=label_of.get,
        key="ea_members",
    )


def choose_sweep(ctx) -> dict:
    """The eps range and its number of points, PGD steps and the number of test images."""
    from trend_core.config.datasets import get_info
    from trend_core.service import defaults

    info = get_info(ctx.dataset)
    low, high = info.eps_range
    c1, c2, c3, c4 = st.columns([2, 1, 1, 1])
    step = defaults.ensemble_eps_step(ctx.dataset)
    eps_low, eps_high = c1.slider(
        "eps range (L-inf, pixel units)",
        0.0,
        float(round(2 * high, 4)),
        (float(low), float(high)),
        step=step,
        format="%.4f",
        key="ea_eps",
        help=f"The {info.name} default eps is {info.default_eps:g}.",
    )
    points = c2.number_input("eps values", 2, 12, defaults.ENSEMBLE_POINTS, key="ea_points")
    steps = c3.number_input(
        "Steps",
        1,
        200,
        defaults.ENSEMBLE_STEPS,
        key="ea_steps",
        help="Iterations of each attack; step size 0.01 (the paper's), larger when needed to reach the largest eps.",
    )
    total = trend_ui.count_test_images(ctx.dataset)
    limit = c4.number_input("Test images", 1, total, min(defaults.ENSEMBLE_IMAGES, total), key="ea_limit")
    epsilons = defaults.ensemble_eps(ctx.dataset, eps_low, eps_high, int(points))  # on the slider's grid
    return {"epsilons": epsilons, "steps": int(steps), "limit": int(limit)}


def show_sweep(result: dict) -> None:
    """Success over eps (lines), at one eps (bars), and per-member numbers at that eps."""
    from trend_core.ensemble.selection import ENSEMBLE_LABEL
    from trend_core.plots.ensemble import (
        RULE_ORDER,
        agreement_figure,
        rule_label,
        success_bars_figure,
        success_lines_figure,
    )

    sweep, agreement = result["sweep"], result["agreement"]
    ensemble = sweep[sweep["model"] == ENSEMBLE_LABEL]
    members = [m for m in dict.fromkeys(sweep["model"]) if m != ENSEMBLE_LABEL]
    st.subheader(f"Attack success against {' + '.join(members)}")
    st.caption(
        "Attack success = share of the images the ensemble classified correctly that the attack turned "
        "wrong (expected over the vote's random tie-breaks). A-GD and U-GD follow gradient signs only, so no "
        "member with a large gradient dominates their direction."
    )
    eps_values = sorted(ensemble["eps"].unique())
    lines, bars = st.columns(2)
    lines.plotly_chart(success_lines_figure(ensemble), width="stretch", key="ea_lines")
    with bars:
        eps = st.select_slider(
            "eps for the bars and the per-member numbers",
            eps_values,
            value=eps_values[len(eps_values) // 2],
            format_func=lambda e: f"{e:g}",
            key="ea_bar_eps",
        )
        st.plotly_chart(success_bars_figure(ensemble, eps), width="stretch", key="ea_bars")
    st.markdown(
        f"**Per member at eps {eps:g}**: how often each rule's step direction has the member's gradient "
        "sign (gradient domination: D-AG follows one member), and the member's own accuracy on the images "
        "crafted against the ensemble."
    )
    at_eps = agreement[agreement["eps"] == eps]
    st.plotly_chart(agreement_figure(at_eps), width="stretch", key="ea_agreement")
    fooled = sweep[(sweep["eps"] == eps) & (sweep["model"] != ENSEMBLE_LABEL)]
    number = {c: st.column_config.NumberColumn(format="%.3f") for c in ("D-AG", "EMPIR", "U-GD", "A-GD")}
    for column, (title, frame, value, index) in zip(
        st.columns(2),
        (
            ("Sign agreement (fraction of pixels)", at_eps, "agreement", "member"),
            ("Member accuracy on the ensemble's adversarial images", fooled, "acc_on_ensemble_adv", "model"),
        ),
    ):
        column.markdown(f"**{title}**")
        table = frame.assign(rule=frame["rule"].map(rule_label)).pivot(index=index, columns="rule", values=value)
        table.index.name = "member"
        column.dataframe(
            table.reindex(index=members, columns=[r for r in RULE_ORDER if r in table.columns]),
            width="stretch",
            column_config=number,
        )
    st.markdown("**Download the sweep** (every rule, eps and member)")
    trend_ui.download_frame(sweep, "ensemble-attacks-sweep", key="ea_dl_sweep")
    st.markdown("**Download the agreement numbers**")
    trend_ui.download_frame(agreement, "ensemble-attacks-agreement", key="ea_dl_agreement")


@st.cache_data(show_spinner="Computing the members' gradients", max_entries=32)
def _views(home: str, identity: tuple, index: int, device: str):
    from trend_core.models.zoo import Zoo
    from trend_core.service.vote_jobs import gradient_views_of

    return gradient_views_of(Zoo(home), [name for name, _ in identity], index, device)


def show_gradients(ctx, members: list[str]) -> None:
    """The paper's Fig. 7 for one test image: each member's gradient and sign, the D-AG and A-GD directions."""
    from trend_core.config.datasets import get_info
    from trend_core.models.members import test_images
    from trend_core.plots.ensemble import gradient_figures, rule_label

    st.subheader("Gradient domination on one image")
    class_names = get_info(ctx.dataset).class_names
    _, y = test_images(ctx.dataset, GALLERY_SIZE)
    labels = [int(v) for v in y]
    index = st.selectbox(
        "Image",
        list(range(len(labels))),
        key="ea_image",
        format_func=lambda i: f"#{i} (class {class_names[labels[i]]})",
    )
    identity = tuple((n, ctx.zoo.metadata(n).get("created")) for n in members)
    views = _views(str(ctx.home), identity, int(index), ctx.device)
    grad_fig, direction_fig = gradient_figures(views)
    st.caption(
        "Each member's input gradient on one shared colour scale (red positive, blue negative): a member "
        "whose gradient is much larger than the others' decides the sign of their mean, the D-AG direction."
    )
    st.plotly_chart(grad_fig, width="stretch", key="ea_gradients")
    st.caption(
        "Per member: its gradient sign, and D-AG and A-GD minus that sign (white where the ensemble direction "
        "agrees with the member). Last row: the two ensemble directions."
    )
    st.plotly_chart(direction_fig, width="stretch", key="ea_directions")
    st.caption(
        "Sign agreement on this image: the fraction of pixels where each ensemble direction has the member's "
        "gradient sign."
    )
    agreement = views.agreement_frame().assign(rule=lambda d: d["rule"].map(rule_label))
    st.dataframe(
        agreement.pivot(index="member", columns="rule", values="agreement").reindex(
            index=views.names, columns=list(dict.fromkeys(agreement["rule"]))
        ),
        width="stretch",
        column_config={c: st.column_config.NumberColumn(format="%.3f") for c in ("D-AG", "A-GD")},
    )


def main() -> None:
    from trend_core.service.vote_jobs import submit_ensemble_sweep

    trend_ui.page_intro(
        "Ensemble attacks",
        "Four ways to attack a majority-vote ensemble with one PGD loop: D-AG "
        "(sign of the mean gradient), EMPIR (mean gradient of the members voting with the ensemble), "
        "U-GD (only where all members' signs agree) and A-GD (sign of the mean of signs, the paper's "
        "recommended benchmark). Compare their success over eps and see gradient domination (the TREND paper, Sec. 6).",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 2, "An ensemble needs at least"):
        return
    with st.container(border=True):
        members = choose_members(ctx)
        settings = choose_sweep(ctx)
        enough = len(members) >= 2
        if not enough:  # the one message about it; the run and the gradient pictures wait for two members
            st.warning(
                f"An ensemble needs at least two members; {'only one is' if members else 'none is'} "
                "chosen. Pick two or more above."
            )
        launch = st.button(
            "Run the four attacks", type="primary", icon=":material/play_arrow:", key="ea_run", disabled=not enough
        )
    if launch:
        with trend_ui.launching("The ensemble attacks", "ensemble-sweep"):
            job = submit_ensemble_sweep(ctx.zoo, ctx.store, members, device=ctx.device, profile=ctx.profile, **settings)
            trend_ui.remember_job("ensemble-sweep", job)
    result = trend_ui.slot_result(
        "ensemble-sweep", "Pick two or more members and an eps range above, then press **Run the four attacks**."
    )
    if result is not None:
        with trend_ui.guard("The attack results"):
            show_sweep(result)
    if enough:
        with trend_ui.guard("The gradient pictures"):
            show_gradients(ctx, members)


with trend_ui.guard("The Ensemble attacks page"):
    main()
