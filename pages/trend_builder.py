"""TREND builder: rank ensembles by how little adversarial images transfer among their members (TREND's low TM),
then measure whether the chosen majority vote is more robust than each of its members, and say so."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import streamlit as st

import trend_ui

TM_FILE = "trend-tm.csv"  # the name the candidates' equivalent command reads the TM matrix from
VERDICT_BOX = {"held": st.success, "did not hold": st.warning, "inconclusive": st.info}


@dataclass
class Run:
    """The transfer run the builder works from, in the zoo's labels (the pickers'), restricted to the pool."""

    key: str
    tm: object  # DataFrame: TM, rows = source, columns = target, zoo labels
    name_of: dict  # zoo label -> canonical name
    accuracies: dict  # zoo label -> clean test accuracy

    def names(self, labels) -> list[str]:
        return [self.name_of[label] for label in labels]


# ----------------------------------------------------------------------------- 1. the transfer run
def finished_runs(ctx) -> list:
    """Finished transfer-run jobs of this store folder and dataset, newest first."""
    from trend_core.service.history import finished_transfer_runs

    return finished_transfer_runs(ctx.zoo, ctx.store, ctx.dataset)


def describe_run(job, label_of: dict) -> str:
    result = job.result
    eps = "no eps clip" if result.eps is None else f"eps {result.eps:.4g}"
    models = [label_of.get(result.specs.get(s), s) for s in result.sources]
    shown = ", ".join(models[:6]) + (f" and {len(models) - 6} more" if len(models) > 6 else "")
    return f"{result.attack.split('(')[0].upper()} {eps}: {shown} ({result.n_images} images)"


def launch_transfer(ctx, expanded: bool) -> None:
    """A PGD transfer run over a pool of zoo models (every model both source and target), as a job; once it is
    done it becomes the page's run."""
    from trend_core.attacks.settings import attack_settings
    from trend_core.errors import TrendError
    from trend_core.service.defaults import POOL_IMAGES, POOL_STEPS, pool_picks
    from trend_core.service.transfer import submit_transfer

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    pgd = attack_settings("pgd", ctx.dataset)  # the same defaults and ranges as the CLI and Transferability
    with st.expander("Launch a transfer run here", expanded=expanded):
        pool = st.multiselect(
            "Candidate pool (each model is attacked and evaluated)",
            names,
            default=pool_picks(metas),
            format_func=label_of.get,
            key="tb_pool",
            help="By default fully trained models only (not the quick demo's 4-epoch ones, not imported weights).",
        )
        c1, c2, c3 = st.columns(3)
        eps = c1.slider(
            "PGD eps",
            0.0,
            float(pgd.eps.high),
            float(pgd.eps.default),
            step=float(round(float(pgd.eps.default) / 20, 5)),
            format="%.4f",
            key="tb_pool_eps",
        )
        steps = c2.number_input("PGD steps", 1, 200, POOL_STEPS, key="tb_pool_steps")
        limit = c3.number_input("Test images", 1, 10_000, POOL_IMAGES, key="tb_pool_limit")
        if st.button("Run transfer", icon=":material/play_arrow:", key="tb_launch"):
            with trend_ui.guard("The transfer run"):
                if len(pool) < 2:
                    raise TrendError("TREND needs a transfer run over at least two models; pick two or more.")
                params = {"eps": eps, "steps": int(steps)}  # the step size follows the engine's rule
                job = submit_transfer(
                    ctx.zoo,
                    ctx.store,
                    pool,
                    pool,
                    "pgd",
                    params,
                    limit=int(limit),
                    device=ctx.device,
                    profile=ctx.profile,
                )
                trend_ui.remember_job("trend-transfer", job)
                st.session_state.pop("tb_adopted", None)
                if job.finished:  # done at once (from the store, or synchronous jobs): adopt it now
                    st.rerun()
        trend_ui.job_panel(trend_ui.recalled_job("trend-transfer"))


def adopt_launched_run() -> str | None:
    """When the run launched on this page has finished, make it the page's run (once, before the run picker is
    drawn); returns the key of the adopted run."""
    from trend_core.runtime.jobs import JobStatus

    job = trend_ui.recalled_job("trend-transfer")
    if job is None or job.status is not JobStatus.DONE:
        return st.session_state.get("tb_adopted")
    if st.session_state.get("tb_adopted") != job.key:
        st.session_state["tb_adopted"] = job.key
        st.session_state["tb_run"] = job.key
    return job.key


def choose_run(ctx):
    """The transfer result the builder works from, or None (with a message saying what to do first)."""
    adopted = adopt_launched_run()
    runs = finished_runs(ctx)
    launch_transfer(ctx, expanded=not runs)
    if not runs:
        trend_ui.empty_state(
            "TREND starts from a finished transfer run: launch one above, or on the "
            "Transferability page (choose several models as both sources and targets).",
            page="pages/transferability.py",
            label="Transferability",
        )
        return None
    by_key = {job.key: job for job in runs}
    if st.session_state.get("tb_run") not in by_key:
        st.session_state.pop("tb_run", None)  # (a run of another folder or dataset): the newest
    label_of = trend_ui.model_labels(ctx.models())
    key = st.selectbox(
        "Transfer run", list(by_key), format_func=lambda k: describe_run(by_key[k], label_of), key="tb_run"
    )
    if key == adopted:
        from trend_core.runtime.jobs import format_seconds

        job = by_key[key]
        took = "from the store" if job.from_store else f"in {format_seconds(job.elapsed)}"
        st.success(
            f"{job.title}: done ({took}). The builder below works from this run.", icon=":material/check_circle:"
        )
    return key, by_key[key].result


# ----------------------------------------------------------------------------- 2. candidates
def run_in_zoo_labels(ctx, key: str, result) -> Run:
    """The run's TM matrix and accuracies under the zoo's labels, restricted to the candidate models the user
    keeps (by default the fully trained ones: the quick demo's 4-epoch models and imported weights are offered,
    not picked)."""
    from trend_core.service.defaults import builder_run, pool_accuracies

    metas = ctx.models()
    tm, name_of, kept, left_out = builder_run(result, metas)
    pool = st.multiselect(
        "Candidate models (from this run)",
        list(name_of),
        default=kept,
        key=f"tb_candidates_{key[:16]}",
        help="TREND picks ensembles among these.",
    )
    if left_out:
        st.caption(
            "Left out by default: "
            + "; ".join(f"{label} ({why})" for label, why in left_out.items())
            + ". Add them above to let TREND pick them."
        )
    if len(pool) < 2:
        from trend_core.errors import TrendError

        raise TrendError("TREND needs at least two candidate models; add some above.")
    accuracies = pool_accuracies(pool, name_of, metas)
    return Run(key, tm.loc[pool, pool], {label: name_of[label] for label in pool}, accuracies)


def choose_candidates(ctx, run: Run) -> tuple | None:
    """Sliders (size, required members, accuracy floor) and the ranked candidate ensembles, with the `trend
    select` command that ranks the same sets from the downloaded TM matrix."""
    from trend_core.ensemble.selection import select_ensembles
    from trend_core.service.commands import select_command
    from trend_core.service.defaults import BUILDER_CANDIDATES, builder_size

    pool = list(run.tm.index)
    c1, c2, c3 = st.columns([1, 2, 1])
    if len(pool) > 2:
        k = c1.slider("Ensemble size", 2, len(pool), builder_size(pool), key="tb_k")
    else:
        k = 2
        c1.caption("Ensemble size: 2 (two candidate models)")
    if "tb_require" in st.session_state:  # keep only members still in the pool
        st.session_state["tb_require"] = [m for m in st.session_state["tb_require"] if m in pool]
    required = c2.multiselect(
        "Required members", pool, key="tb_require", help="e.g. the full-precision model, which lifts clean accuracy."
    )
    floor = c3.slider("Clean accuracy floor (%)", 0, 100, 0, key="tb_floor")
    candidates = select_ensembles(
        run.tm,
        k,
        require=required,
        min_acc=floor / 100 if floor else None,
        accuracies=run.accuracies,
        top=BUILDER_CANDIDATES,
    )
    st.markdown(
        f"**TREND's ranking** ({candidates.attrs.get('method', '')} search over "
        f"{candidates.attrs.get('candidates', len(candidates))} sets): mean pairwise symmetrized TM, lower "
        "is better (attacks transfer less among the members). Low TM is TREND's proxy for robustness; "
        "section 3 measures it."
    )
    shown = candidates.drop(columns=["members"]).rename(
        columns={"score": "mean pair TM", "max_pair_tm": "max pair TM", "undefined_pairs": "pairs without TM"}
    )
    for column in ("min_acc", "mean_acc"):
        if column in shown:
            shown[column] = 100 * shown[column]
    st.dataframe(
        shown,
        width="stretch",
        column_config={
            "mean pair TM": st.column_config.NumberColumn(format="%.3f"),
            "max pair TM": st.column_config.NumberColumn(format="%.3f"),
            "min_acc": st.column_config.NumberColumn("min clean acc %", format="%.1f"),
            "mean_acc": st.column_config.NumberColumn("mean clean acc %", format="%.1f"),
        },
    )
    trend_ui.download_frame(
        candidates.assign(members=candidates["members"].map(" + ".join)), "trend-candidates", key="tb_dl_candidates"
    )
    with st.expander("Equivalent command", icon=":material/terminal:"):
        st.code(
            select_command(TM_FILE, k, required, floor / 100 if floor else None, 10, ctx.dataset, ctx.home),
            language="bash",
        )
        st.caption(f"With the candidates' TM matrix saved as {TM_FILE} (the same labels as here):")
        st.download_button(
            "Download the TM matrix",
            run.tm.rename_axis("source").reset_index().to_csv(index=False).encode(),
            TM_FILE,
            "text/csv",
            key="tb_dl_tm",
            on_click="ignore",
            icon=":material/download:",
        )
    # the options are the ensembles themselves (not their ranks), so a new ranking can never leave an old
    # ensemble's name on the picker
    rank_of = {ensemble: rank for rank, ensemble in candidates["ensemble"].items()}
    ensemble = st.selectbox(
        "Ensemble to evaluate", list(rank_of), key="tb_choice", format_func=lambda e: f"#{rank_of[e]}: {e}"
    )
    return list(candidates.at[rank_of[ensemble], "members"]), required, floor, candidates


# ----------------------------------------------------------------------------- 3. robustness
def attack_settings(ctx) -> dict:
    from trend_core.config.datasets import get_info
    from trend_core.service.defaults import builder_attack

    info = get_info(ctx.dataset)
    start = builder_attack(ctx.dataset)
    c1, c2, c3 = st.columns(3)
    eps = c1.slider(
        "A-GD eps",
        0.0,
        float(round(3 * info.default_eps, 4)),
        start["eps"],
        step=float(round(info.default_eps / 20, 5)),
        format="%.4f",
        key="tb_eps",
        help="The paper's headline: eps = 0.01 on CIFAR-10.",
    )
    steps = c2.number_input("A-GD steps", 1, 200, start["steps"], key="tb_steps")
    limit = c3.number_input(
        "Images attacked",
        1,
        10_000,
        start["limit"],
        key="tb_limit",
        help="The first test images; accuracy under attack is measured on them.",
    )
    return {"eps": eps, "steps": int(steps), "limit": int(limit)}


def show_verdict(result: dict) -> None:
    """The verdict sentence (with intervals), boxed by its outcome."""
    if "sentence" in result:
        box = VERDICT_BOX.get(result.get("verdict"), st.info)
        box(result["sentence"], icon=":material/gavel:")


def show_comparison(comparison, stem: str, key: str) -> None:
    """Per member: both accuracies and the paired difference, each with its 95% interval, and the finding."""
    if comparison is None or len(comparison) == 0:
        return

    def text(row, name: str, unit: str) -> str:
        sign = "+" if name == "difference" else ""
        low, high = row[f"{name}_ci_low"], row[f"{name}_ci_high"]
        return f"{100 * row[name]:{sign}.1f}{unit} [{100 * low:{sign}.1f}, {100 * high:{sign}.1f}]"

    table = {
        "member": comparison["member"],
        "ensemble": [text(r, "ensemble_accuracy", "%") for _, r in comparison.iterrows()],
        "member alone": [text(r, "member_accuracy", "%") for _, r in comparison.iterrows()],
        "ensemble − member": [text(r, "difference", " pp") for _, r in comparison.iterrows()],
        "finding": comparison["finding"],
    }
    st.dataframe(table, hide_index=True, width="stretch", key=key)
    st.caption(
        "Accuracy kept under the attack, with 95% bootstrap intervals over the images; the difference is "
        "paired (the same images for the vote and the member), in percentage points."
    )
    trend_ui.download_frame(comparison, stem, key=f"{key}-dl")


def show_evaluation(result: dict) -> None:
    from trend_core.ensemble.selection import ENSEMBLE_LABEL
    from trend_core.plots.ensemble import robustness_bars_figure

    sweep, ratios = result["sweep"], result["ratios"]
    eps = float(sweep["eps"].iloc[0])
    members = list(ratios["member"])
    ens_acc = float(sweep.loc[sweep["model"] == ENSEMBLE_LABEL, "accuracy"].iloc[0])
    show_verdict(result)
    st.markdown(
        f"**{' + '.join(members)}** under A-GD at eps {eps:g}: the ensemble keeps {ens_acc:.1%} of the "
        "images; each member attacked alone keeps:"
    )
    for column, row in zip(st.columns(len(ratios)), ratios.itertuples(index=False)):
        ratio = row.times_more_robust
        text = "n/a" if ratio != ratio else ("inf" if ratio == float("inf") else f"{ratio:.2f}x")
        gap = 100 * (row.ensemble_accuracy - row.member_accuracy)
        column.metric(
            f"vs {row.member} alone",
            text,
            delta=f"{gap:+.1f} pp" if gap == gap else None,
            delta_color="normal",
            help=f"{row.member} keeps {row.member_accuracy:.1%}; the ensemble "
            f"{row.ensemble_accuracy:.1%} (below 1x: the member alone is more robust)",
        )
    frame = sweep[["model", "accuracy"]]
    st.plotly_chart(robustness_bars_figure(frame, ENSEMBLE_LABEL), width="stretch", key="tb_robustness")
    show_comparison(result.get("comparison"), f"trend-robustness-eps{eps:g}", "tb_comparison")


def growth_comment(frame) -> str | None:
    """A sentence when the accuracy under attack does not grow with the ensemble (the paper's Fig. 9 rises)."""
    ordered = frame.sort_values("size")
    acc = list(ordered["accuracy"])
    if len(acc) < 2 or all(b >= a for a, b in itertools.pairwise(acc)):
        return None
    top = max(range(len(acc)), key=acc.__getitem__)
    sizes = list(ordered["size"])
    path = " → ".join(f"{a:.1%}" for a in acc)
    if top == len(acc) - 1:
        return f"Accuracy under attack does not rise steadily with size ({path}): some added members hurt the vote."
    return (
        f"Accuracy under attack peaks at size {sizes[top]} ({acc[top]:.1%}) and falls after it ({path}): "
        f"adding members beyond {sizes[top]} makes this vote less robust here."
    )


def show_growth(frame) -> None:
    from trend_core.plots.ensemble import growth_figure

    eps = float(frame["eps"].iloc[0])
    st.markdown(
        "**Robustness as the ensemble grows** (the paper's Fig. 9): from the first required member (else the "
        "most accurate model), the best TREND set of each size that holds it and the required members."
    )
    comment = growth_comment(frame)
    if comment:
        st.warning(comment, icon=":material/trending_down:")
    st.plotly_chart(growth_figure(frame, f"A-GD eps {eps:g}"), width="stretch", key="tb_growth")
    shown, columns = percent_table(frame.drop(columns=["eps"]), eps)
    st.dataframe(shown, hide_index=True, width="stretch", column_config=columns)
    trend_ui.download_frame(frame, f"trend-growth-eps{eps:g}", key="tb_dl_growth")


ACCURACY_COLUMNS = ("clean_accuracy", "accuracy", "ci_low", "ci_high")


def percent_table(frame, eps: float):
    """``frame`` with its accuracies (fractions) in percent, and the column titles and one-decimal formats to
    show them with."""
    shown = frame.copy()
    for column in ACCURACY_COLUMNS:
        if column in shown:
            shown[column] = 100 * shown[column]
    titles = {
        "clean_accuracy": "clean accuracy %",
        "accuracy": f"accuracy under A-GD eps {eps:g} %",
        "ci_low": "95% low",
        "ci_high": "95% high",
    }
    return shown, {c: st.column_config.NumberColumn(t, format="%.1f") for c, t in titles.items()}


def show_ranking(frame, candidates) -> None:
    """Beyond the paper: the candidates ranked by the measured accuracy of their vote under A-GD, beside TREND's
    rank."""
    eps = float(frame["eps"].iloc[0])
    table = frame.drop(columns=["eps", "size"]).assign(**{"TREND rank": list(candidates.index)})
    table = table.sort_values("accuracy", ascending=False, kind="stable").reset_index(drop=True)
    table.index = table.index + 1
    table = table.rename_axis("robustness rank")[
        ["TREND rank", "members", "accuracy", "ci_low", "ci_high", "clean_accuracy"]
    ]
    shown, columns = percent_table(table, eps)
    st.dataframe(shown, width="stretch", column_config=columns, key="tb_ranking")
    best, first = table.iloc[0], table[table["TREND rank"] == 1].iloc[0]
    if int(best["TREND rank"]) != 1:
        apart = (
            "its interval lies wholly above #1's"
            if best["ci_low"] > first["ci_high"]
            else "but their 95% intervals overlap, so these images do not tell the two apart"
        )
        st.info(
            f"Measured under A-GD, TREND's #{int(best['TREND rank'])} ({best['members']}, {best['accuracy']:.1%}) "
            f"holds up better than its #1 ({first['members']}, {first['accuracy']:.1%}): {apart}.",
            icon=":material/swap_vert:",
        )
    trend_ui.download_frame(table, f"trend-robustness-ranking-eps{eps:g}", key="tb_dl_ranking")


def evaluate(ctx, run: Run, chosen: list[str], required, floor, candidates) -> None:
    from trend_core.ensemble.selection import growing_ensembles, growth_start
    from trend_core.service.defaults import builder_growth_size
    from trend_core.service.vote_jobs import submit_trend_evaluation, submit_trend_growth

    st.subheader("3. Robustness of the vote")
    settings = attack_settings(ctx)
    pool = list(run.tm.index)
    common = dict(device=ctx.device, profile=ctx.profile, **settings)
    evaluation = (submit_trend_evaluation, ctx.zoo, ctx.store, run.names(chosen))
    if st.button("Evaluate the chosen ensemble", type="primary", icon=":material/shield:", key="tb_eval"):
        with trend_ui.guard("The evaluation"):
            evaluation[0](*evaluation[1:], **common)
    result = trend_ui.job_panel(trend_ui.job_for(*evaluation, **common))
    if result is not None:
        show_evaluation(result)
    else:
        st.caption(f"Press **Evaluate** to attack {' + '.join(chosen)} and each member alone with A-GD.")

    st.markdown(
        "**Ranking by measured robustness** (beyond the paper: TREND ranks by low TM only). Attacks the "
        "vote of each candidate above with A-GD and ranks them by what they withstand."
    )
    ranking = (submit_trend_growth, ctx.zoo, ctx.store, [run.names(m) for m in candidates["members"]])
    if st.button("Rank the candidates by measured robustness", icon=":material/leaderboard:", key="tb_rank"):
        with trend_ui.guard("The robustness ranking"):
            ranking[0](*ranking[1:], purpose="ranking", **common)
    frame = trend_ui.job_panel(trend_ui.job_for(*ranking, purpose="ranking", **common))
    if frame is not None:
        show_ranking(frame, candidates)

    c1, c2 = st.columns([1, 2])
    top = (
        c2.slider("Largest size for the growth curve", 2, len(pool), builder_growth_size(pool), key="tb_grow_max")
        if len(pool) > 2
        else 2
    )
    start = growth_start(pool, required, run.accuracies)
    with trend_ui.guard("The growth curve"):
        sets = growing_ensembles(run.tm, top, start, required, floor / 100 if floor else None, run.accuracies)
        growth = (submit_trend_growth, ctx.zoo, ctx.store, [run.names(s) for s in sets])
        if c1.button("Robustness as it grows", icon=":material/trending_up:", key="tb_grow"):
            growth[0](*growth[1:], **common)
        frame = trend_ui.job_panel(trend_ui.job_for(*growth, **common))
        if frame is not None:
            show_growth(frame)
    audit_section(ctx, run, chosen, settings)
    export_section(ctx, run, chosen, settings)


# ----------------------------------------------------------------------------- 4. audit
def audit_section(ctx, run: Run, chosen: list[str], settings: dict) -> None:
    """The quick robustness audit of the chosen ensemble and each member alone: A-GD beside the worst case."""
    from trend_core.service.vote_jobs import submit_trend_audit

    st.subheader("4. Is this robustness real?")
    st.caption(
        "A-GD alone can overstate robustness: quantized inputs, halftoning and votes mask gradients. The "
        "audit attacks with APGD (CE and DLR, averaged over tie-breaks), other backward passes of the input "
        "transform, the gradient-free Square attack and transfer from the other zoo models; an image counts "
        "as robust only if it survives them all (see the Robustness audit page for the details)."
    )
    audit = (submit_trend_audit, ctx.zoo, ctx.store, run.names(chosen), settings["eps"])
    options = dict(limit=settings["limit"], device=ctx.device)
    if st.button("Audit the ensemble and its members", icon=":material/policy:", key="tb_audit"):
        with trend_ui.guard("The audit"):
            audit[0](*audit[1:], **options)
    result = trend_ui.job_panel(trend_ui.job_for(*audit, **options))
    if result is not None:
        show_audit(result)


def show_audit(audit: dict) -> None:
    summary = audit["summary"]
    eps = float(summary["eps"].iloc[0])
    show_verdict(audit)
    st.dataframe(
        summary.drop(columns=["eps"]),
        hide_index=True,
        width="stretch",
        column_config={
            "clean_accuracy": st.column_config.NumberColumn("clean accuracy", format="percent"),
            "agd_accuracy": st.column_config.NumberColumn(f"under A-GD eps {eps:g}", format="percent"),
            "worst_case_accuracy": st.column_config.NumberColumn(f"worst case eps {eps:g}", format="percent"),
            "flags": st.column_config.TextColumn("flags fired"),
        },
    )
    for flag in audit["flags"]:
        if flag["fired"]:
            st.warning(f"**{flag['model']}**, {flag['name']}: {flag['sentence']}", icon=":material/flag:")
    show_comparison(audit.get("comparison"), f"trend-audit-worst-case-eps{eps:g}", "tb_audit_comparison")
    trend_ui.download_frame(summary, f"trend-audit-eps{eps:g}", key="tb_dl_audit")


# ----------------------------------------------------------------------------- 5. export
EXPORT_FILES = (
    ("program", "ensemble.pt2", "application/octet-stream"),
    ("html", "card.html", "text/html"),
    ("json", "card.json", "application/json"),
)


def export_section(ctx, run: Run, chosen: list[str], settings: dict) -> None:
    """The chosen vote as one .pt2 file plain torch runs (no TREND Lab needed), with its robustness card: clean
    accuracy, A-GD and the audit's worst case at the eps above (95% intervals), the audit's flags, TM among the
    members and the commands that reproduce it."""
    from trend_core.service.export import exported_files, submit_export

    st.subheader("5. Export the ensemble", anchor="export")
    st.caption(
        f"Writes {' + '.join(chosen)} as one torch.export program (pixels in [0, 1] -> logits whose argmax is "
        "the vote; load it with `torch.export.load('ensemble.pt2').module()`), checked by loading it back, "
        f"and its robustness card at eps {settings['eps']:g} on the first {settings['limit']} test images "
        "(runs the quick audit)."
    )
    export = (submit_export, ctx.zoo, ctx.store, run.names(chosen), [settings["eps"]])
    options = dict(limit=settings["limit"], steps=settings["steps"], device=ctx.device)
    if st.button("Export with its robustness card", icon=":material/download:", key="tb_export"):
        with trend_ui.guard("The export"):
            export[0](*export[1:], **options)
    result = trend_ui.job_panel(trend_ui.job_for(*export, **options))
    if result is not None:
        show_export(result, exported_files(result))


def show_export(result: dict, files: dict | None) -> None:
    from trend_core.plots.card import accuracy_text as _pct

    card = result["card"]
    worst = card["audit"][0] if card["audit"] else {}
    fired = [f["name"] for f in card["flags"] if f["fired"]]
    st.markdown(
        f"**Robustness card**: clean {_pct(card['vote_clean'])}, under A-GD {_pct(card['agd'][0])}, audit worst "
        f"case {_pct(worst)} (95% intervals over {card['n_images']} images); flags fired: "
        f"{', '.join(fired) if fired else 'none'}."
    )
    if files is None:
        st.warning("The exported files are no longer on disk; export again.")
        return
    for column, (kind, name, mime) in zip(st.columns(len(EXPORT_FILES)), EXPORT_FILES):
        column.download_button(
            f"Download {name}",
            files[kind],
            name,
            mime,
            key=f"tb_dl_export_{kind}",
            on_click="ignore",
            icon=":material/download:",
        )
    with st.expander("Commands that reproduce it", icon=":material/terminal:"):
        st.code("\n".join(card["commands"]), language="bash")


def main() -> None:
    trend_ui.page_intro(
        "TREND builder",
        "TREND, the paper's ensemble selection, ranks sets of models by how little "
        "adversarial images crafted on one member fool the others (lowest mean symmetrized TM). Low "
        "TM is a proxy for robustness, not a guarantee: this page then attacks the chosen majority "
        "vote and each member alone, and says with 95% intervals whether the vote is more robust "
        "than every member, or which member beats it.",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 2, "TREND needs at least"):
        return
    st.subheader("1. Transfer run")
    picked_run = choose_run(ctx)
    if picked_run is None:
        return
    st.subheader("2. Candidate ensembles")
    with trend_ui.guard("The TREND selection"):
        run = run_in_zoo_labels(ctx, *picked_run)
        picked = choose_candidates(ctx, run)
        if picked is not None:
            evaluate(ctx, run, *picked)


with trend_ui.guard("The TREND builder page"):
    main()
