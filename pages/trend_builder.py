"""TREND builder: pick the ensemble whose members transfer least to each other, then measure its robustness (PAPER §7)."""
from __future__ import annotations

import streamlit as st

import trend_ui

# The default candidate pool: the paper's headline members FP, Q1 and Q2 and three more input quantizations,
# so TREND has a choice to make (other models where the zoo lacks these).
POOL_INPUTS = ("FP", "Q1", "Q2", "HT", "Q4", "Q8")


# ----------------------------------------------------------------------------- 1. the transfer run
def finished_runs(ctx) -> list:
    """Finished transfer-run jobs of this store folder and dataset, newest first."""
    from trend_core.analysis_jobs import finished_transfer_runs

    return finished_transfer_runs(ctx.zoo, ctx.store, ctx.dataset)


def describe_run(job) -> str:
    result = job.result
    eps = "no eps clip" if result.eps is None else f"eps {result.eps:.4g}"
    return f"{result.attack.split('(')[0].upper()} {eps}: {', '.join(result.sources)} ({result.n_images} images)"


def launch_transfer(ctx, expanded: bool) -> None:
    """A PGD transfer run over a pool of zoo models (every model both source and target), as a job."""
    from trend_core.analysis_jobs import submit_transfer
    from trend_core.attacks.settings import attack_settings
    from trend_core.labels import paper_picks
    from trend_core.errors import TrendError

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    pgd = attack_settings("pgd", ctx.dataset)  # the same defaults and ranges as the CLI and Transferability
    with st.expander("Launch a transfer run here", expanded=expanded):
        pool = st.multiselect("Candidate pool (each model is attacked and evaluated)", names,
                              default=paper_picks(names, POOL_INPUTS), format_func=label_of.get, key="tb_pool")
        c1, c2, c3 = st.columns(3)
        eps = c1.slider("PGD eps", 0.0, float(pgd.eps.high), float(pgd.eps.default),
                        step=float(round(float(pgd.eps.default) / 20, 5)), format="%.4f", key="tb_pool_eps")
        steps = c2.number_input("PGD steps", 1, 200, 20, key="tb_pool_steps")
        limit = c3.number_input("Test images", 1, 10_000, 200, key="tb_pool_limit")
        if st.button("Run transfer", icon=":material/play_arrow:", key="tb_launch"):
            with trend_ui.guard("The transfer run"):
                if len(pool) < 2:
                    raise TrendError("TREND needs a transfer run over at least two models; pick two or more.")
                params = {"eps": eps, "steps": int(steps)}  # the step size follows the engine's rule
                job = submit_transfer(ctx.zoo, ctx.store, pool, pool, "pgd", params, limit=int(limit),
                                      device=ctx.device, profile=ctx.profile)
                trend_ui.remember_job("trend-transfer", job)
                if job.finished:  # done at once (from the store, or synchronous jobs): list it
                    st.rerun()
        trend_ui.job_panel(trend_ui.recalled_job("trend-transfer"))


def choose_run(ctx):
    """The transfer result the builder works from, or None (with a message saying what to do first)."""
    runs = finished_runs(ctx)
    launch_transfer(ctx, expanded=not runs)
    if not runs:
        trend_ui.empty_state("TREND starts from a finished transfer run: launch one above, or on the "
                             "Transferability page (choose several models as both sources and targets).",
                             page="pages/transferability.py", label="Transferability")
        return None
    by_key = {job.key: job for job in runs}
    key = st.selectbox("Transfer run", list(by_key), format_func=lambda k: describe_run(by_key[k]), key="tb_run")
    return by_key[key].result


# ----------------------------------------------------------------------------- 2. candidates
def accuracies_of(ctx, result) -> dict[str, float]:
    """Clean test accuracy of each model of the run (by its label), from the zoo's metadata."""
    from trend_core.analysis_jobs import zoo_accuracies

    return zoo_accuracies(ctx.zoo, result)


def choose_candidates(ctx, result) -> tuple | None:
    """Sliders (size, required members, accuracy floor) and the ranked candidate ensembles."""
    from trend_core.ensemble import select_ensembles, symmetrize

    tm = result.matrix(averages=False)
    pool = list(symmetrize(tm).index)
    accuracies = accuracies_of(ctx, result)
    c1, c2, c3 = st.columns([1, 2, 1])
    if len(pool) > 2:
        k = c1.slider("Ensemble size", 2, len(pool), min(3, len(pool)), key="tb_k")
    else:
        k = 2
        c1.caption("Ensemble size: 2 (the run has two models)")
    required = c2.multiselect("Required members", pool, key="tb_require",
                              help="e.g. the full-precision model, which lifts clean accuracy.")
    floor = c3.slider("Clean accuracy floor (%)", 0, 100, 0, key="tb_floor")
    candidates = select_ensembles(tm, k, require=required, min_acc=floor / 100 if floor else None,
                                  accuracies=accuracies, top=10)
    st.markdown(f"**Ranked candidates** ({candidates.attrs.get('method', '')} search over "
                f"{candidates.attrs.get('candidates', len(candidates))} sets): mean pairwise symmetrized TM, lower "
                "is better (attacks transfer less among the members).")
    shown = candidates.drop(columns=["members"]).rename(columns={"score": "mean pair TM", "max_pair_tm": "max pair TM",
                                                                 "undefined_pairs": "pairs without TM"})
    for column in ("min_acc", "mean_acc"):
        if column in shown:
            shown[column] = 100 * shown[column]
    st.dataframe(shown, width="stretch", column_config={
        "mean pair TM": st.column_config.NumberColumn(format="%.3f"),
        "max pair TM": st.column_config.NumberColumn(format="%.3f"),
        "min_acc": st.column_config.NumberColumn("min clean acc %", format="%.1f"),
        "mean_acc": st.column_config.NumberColumn("mean clean acc %", format="%.1f")})
    trend_ui.download_frame(candidates.assign(members=candidates["members"].map(" + ".join)), "trend-candidates",
                            key="tb_dl_candidates")
    rank = st.selectbox("Ensemble to evaluate", list(candidates.index), key="tb_choice",
                        format_func=lambda r: f"#{r}: {candidates.at[r, 'ensemble']}")
    return list(candidates.at[rank, "members"]), pool, required, floor, accuracies, tm


# ----------------------------------------------------------------------------- 3. robustness
def canonical(result, labels) -> list[str]:
    return result.spec_names(labels)


def attack_settings(ctx) -> dict:
    from trend_core.data import get_info

    info = get_info(ctx.dataset)
    c1, c2, c3 = st.columns(3)
    eps = c1.slider("A-GD eps", 0.0, float(round(3 * info.default_eps, 4)), float(info.default_eps),
                    step=float(round(info.default_eps / 20, 5)), format="%.4f", key="tb_eps",
                    help="The paper's headline: eps = 0.01 on CIFAR-10.")
    steps = c2.number_input("A-GD steps", 1, 200, 20, key="tb_steps")
    limit = c3.number_input("Images attacked", 1, 10_000, 100, key="tb_limit",
                            help="The first test images; accuracy under attack is measured on them.")
    return {"eps": eps, "steps": int(steps), "limit": int(limit)}


def show_evaluation(result: dict) -> None:
    from trend_core.ensemble import ENSEMBLE_LABEL
    from trend_core.plots.ensemble import robustness_bars_figure

    sweep, ratios = result["sweep"], result["ratios"]
    eps = float(sweep["eps"].iloc[0])
    members = list(ratios["member"])
    ens_acc = float(sweep.loc[sweep["model"] == ENSEMBLE_LABEL, "accuracy"].iloc[0])
    st.markdown(f"**{' + '.join(members)}** under A-GD at eps {eps:g}: the ensemble keeps {ens_acc:.1%} of the "
                "images; each member attacked alone keeps:")
    for column, row in zip(st.columns(len(ratios)), ratios.itertuples(index=False)):
        ratio = row.times_more_robust
        text = "n/a" if ratio != ratio else ("inf" if ratio == float("inf") else f"{ratio:.2f}x")
        column.metric(f"vs {row.member} alone", text, help=f"{row.member} keeps {row.member_accuracy:.1%}")
    frame = sweep[["model", "accuracy"]]
    st.plotly_chart(robustness_bars_figure(frame, ENSEMBLE_LABEL), width="stretch", key="tb_robustness")
    trend_ui.download_frame(ratios, f"trend-robustness-eps{eps:g}", key="tb_dl_ratios")


def show_growth(frame) -> None:
    from trend_core.plots.ensemble import growth_figure

    eps = float(frame["eps"].iloc[0])
    st.markdown("**Robustness as the ensemble grows** (the paper's Fig. 9): from the first required member (else the "
                "most accurate model), the best TREND set of each size that holds it and the required members.")
    st.plotly_chart(growth_figure(frame, f"A-GD eps {eps:g}"), width="stretch", key="tb_growth")
    st.dataframe(frame.drop(columns=["eps"]), hide_index=True, width="stretch",
                 column_config={"clean_accuracy": st.column_config.NumberColumn("clean accuracy", format="percent"),
                                "accuracy": st.column_config.NumberColumn(f"accuracy under A-GD eps {eps:g}",
                                                                          format="percent")})
    trend_ui.download_frame(frame, f"trend-growth-eps{eps:g}", key="tb_dl_growth")


def evaluate(ctx, result, chosen: list[str], pool, required, floor, accuracies, tm) -> None:
    from trend_core.analysis_jobs import growing_ensembles, submit_trend_evaluation, submit_trend_growth

    st.subheader("Robustness")
    settings = attack_settings(ctx)
    c1, c2, c3 = st.columns([1.5, 1.3, 2])
    run_eval = c1.button("Evaluate the chosen ensemble", type="primary", icon=":material/shield:", key="tb_eval")
    top = c3.slider("Largest size for the growth curve", 2, len(pool), min(4, len(pool)), key="tb_grow_max") \
        if len(pool) > 2 else 2
    run_growth = c2.button("Robustness as it grows", icon=":material/trending_up:", key="tb_grow")
    if run_eval:
        with trend_ui.guard("The evaluation"):
            job = submit_trend_evaluation(ctx.zoo, ctx.store, canonical(result, chosen), device=ctx.device,
                                          profile=ctx.profile, **settings)
            trend_ui.remember_job("trend-eval", job)
    if run_growth:
        with trend_ui.guard("The growth curve"):
            ranked = sorted(pool, key=lambda m: -accuracies.get(m, 0.0))
            start = required[0] if required else ranked[0]
            sets = growing_ensembles(tm, top, start, required, floor / 100 if floor else None, accuracies)
            job = submit_trend_growth(ctx.zoo, ctx.store, [canonical(result, s) for s in sets], device=ctx.device,
                                      profile=ctx.profile, **settings)
            trend_ui.remember_job("trend-growth", job)
    evaluation = trend_ui.job_panel(trend_ui.recalled_job("trend-eval", kind="trend-eval"))
    if evaluation is not None:
        show_evaluation(evaluation)
    growth = trend_ui.job_panel(trend_ui.recalled_job("trend-growth", kind="trend-growth"))
    if growth is not None:
        show_growth(growth)
    audit_section(ctx, result, chosen, settings)


# ----------------------------------------------------------------------------- 4. audit
def audit_section(ctx, result, chosen: list[str], settings: dict) -> None:
    """The quick robustness audit of the chosen ensemble and each member alone: A-GD beside the worst case."""
    from trend_core.analysis_jobs import submit_trend_audit

    st.subheader("Is this robustness real?")
    st.caption("A-GD alone can overstate robustness: quantized inputs, halftoning and votes mask gradients. The "
               "audit attacks with APGD (CE and DLR, averaged over tie-breaks), other backward passes of the input "
               "transform, the gradient-free Square attack and transfer from the other zoo models; an image counts "
               "as robust only if it survives them all (see the Robustness audit page for the details).")
    if st.button("Audit the ensemble and its members", icon=":material/policy:", key="tb_audit"):
        with trend_ui.guard("The audit"):
            job = submit_trend_audit(ctx.zoo, ctx.store, canonical(result, chosen), settings["eps"],
                                     limit=settings["limit"], device=ctx.device)
            trend_ui.remember_job("trend-audit", job)
    audit = trend_ui.job_panel(trend_ui.recalled_job("trend-audit", kind="trend-audit"))
    if audit is not None:
        show_audit(audit)


def show_audit(audit: dict) -> None:
    summary = audit["summary"]
    eps = float(summary["eps"].iloc[0])
    st.dataframe(summary.drop(columns=["eps"]), hide_index=True, width="stretch", column_config={
        "clean_accuracy": st.column_config.NumberColumn("clean accuracy", format="percent"),
        "agd_accuracy": st.column_config.NumberColumn(f"under A-GD eps {eps:g}", format="percent"),
        "worst_case_accuracy": st.column_config.NumberColumn(f"worst case eps {eps:g}", format="percent"),
        "flags": st.column_config.TextColumn("flags fired")})
    for flag in audit["flags"]:
        if flag["fired"]:
            st.warning(f"**{flag['model']}**, {flag['name']}: {flag['sentence']}", icon=":material/flag:")
    trend_ui.download_frame(summary, f"trend-audit-eps{eps:g}", key="tb_dl_audit")


def main() -> None:
    trend_ui.page_intro("TREND builder", "TREND picks the ensemble whose members' adversarial images transfer least "
                        "to each other (lowest mean symmetrized TM), so one attack rarely fools the majority; then "
                        "measures it under A-GD against each member alone (PAPER §7).")
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 2, "TREND needs at least"):
        return
    st.subheader("1. Transfer run")
    result = choose_run(ctx)
    if result is None:
        return
    st.subheader("2. Candidate ensembles")
    with trend_ui.guard("The TREND selection"):
        picked = choose_candidates(ctx, result)
        if picked is not None:
            evaluate(ctx, result, *picked)


with trend_ui.guard("The TREND builder page"):
    main()
