"""Reproduce: the paper's experiments end to end as one background job, then its findings table, figures and
downloads (the same report `trend reproduce` writes). A finished report comes back from the store."""

from __future__ import annotations

import streamlit as st

import trend_ui

SCALE_HELP = (
    "mini: three models (digits: the quick demo zoo), a few images (a smoke test, about 40 s on digits); "
    "quick: the whole suite on the dataset's preset (digits: about 10 minutes on an idle 2-core CPU from an "
    "empty zoo, 8 with the preset trained; MNIST takes longer: 12 times the pixels); full: the paper's step "
    "counts and every test image."
)


def choose(ctx) -> tuple[str, str]:
    from trend_core.config.profiles import PROFILES
    from trend_core.reproduce.settings import SCALES

    left, right = st.columns(2)
    scale = left.radio("Scale", SCALES, index=SCALES.index("quick"), horizontal=True, key="rp_scale", help=SCALE_HELP)
    profiles = list(PROFILES)
    profile = right.radio(
        "Profile",
        profiles,
        horizontal=True,
        key="rp_profile",
        help="paper: the method as the paper describes it; authors: as the authors' code does it.",
    )
    return scale, profile


def show_findings(report: dict) -> None:
    from trend_core.reproduce.findings import findings_frame
    from trend_core.reproduce.judging import INTERVAL_NOTE, VERDICTS

    frame = findings_frame(report["findings"])
    counts = frame["verdict"].value_counts()
    cols = st.columns(len(VERDICTS))
    for col, verdict in zip(cols, VERDICTS):
        col.metric(verdict, int(counts.get(verdict, 0)))
    for note in report["run"].get("notes", []):
        st.warning(note)
    st.caption(INTERVAL_NOTE + " Numbers in the table read value [95% interval].")
    order = ["finding", "verdict", *[c for c in frame.columns if c not in ("finding", "verdict")]]
    st.dataframe(
        frame,
        hide_index=True,
        width="stretch",
        key="rp_findings",
        column_order=order,
        column_config={
            "finding": st.column_config.NumberColumn(pinned=True),
            "verdict": st.column_config.TextColumn(width=170, pinned=True),  # always in view
            "claim": st.column_config.TextColumn(width="large"),
            "rule": st.column_config.TextColumn(width="medium"),
        },
    )
    run = report["run"]
    st.caption(
        f"Device {run['device']}; wall time of the run that made this report {run['wall_seconds']:.1f} s; "
        f"compute time of its stages when first run {run['compute_seconds']:.1f} s."
    )


def show_stages(report: dict) -> None:
    from trend_core.reproduce.figures import stage_figures
    from trend_core.reproduce.stage_list import STAGES

    for name, stage in report["stages"].items():
        title = STAGES[name][0] if name in STAGES else name
        with st.expander(title, expanded=False):
            if stage.get("status") != "done":
                st.info(str(stage.get("status")))
                continue
            for i, (caption, fig) in enumerate(stage_figures(name, stage, report["settings"]["dataset"])):
                st.markdown(f"**{caption}**")
                st.plotly_chart(fig, width="stretch", key=f"rp_fig_{name}_{i}")
            for key, value in stage.items():
                if hasattr(value, "to_csv"):
                    st.markdown(f"**{key}**")
                    st.dataframe(value, hide_index=True, width="stretch", key=f"rp_table_{name}_{key}")


def downloads(report: dict, stem: str) -> None:
    from trend_core.reproduce import build_html, csv_bundle

    row = st.container(horizontal=True)
    row.download_button(
        "Download the HTML report",
        lambda: build_html(report).encode(),
        f"{stem}.html",
        "text/html",
        key="rp_dl_html",
        on_click="ignore",
        icon=":material/download:",
    )
    row.download_button(
        "Download the CSV bundle",
        lambda: csv_bundle(report),
        f"{stem}-csv.zip",
        "application/zip",
        key="rp_dl_csv",
        on_click="ignore",
        icon=":material/download:",
    )


def main() -> None:
    from trend_core.reproduce import stored_reproduction, submit_reproduce
    from trend_core.reproduce.settings import DATASETS

    trend_ui.page_intro(
        "Reproduce",
        "Which of the paper's findings hold on your data? One run trains the models it "
        "needs, measures the paper's tables and figures (transfer under four attacks, TM matrices, "
        "a decision boundary, ensemble attacks, TREND ensembles, the TM(eps) fit, the robustness "
        "audit) and judges each of its eight findings by a stated rule.",
    )
    ctx = trend_ui.context()
    if ctx.dataset not in DATASETS:
        st.info(f"Reproduction runs on {', '.join(DATASETS)}; pick one of them in the sidebar.")
        return
    with st.container(border=True):
        scale, profile = choose(ctx)
        c1, c2 = st.columns([1, 1])
        launch = c1.button("Run the reproduction", type="primary", icon=":material/play_arrow:", key="rp_run")
        again = c2.button(
            "Run again",
            icon=":material/refresh:",
            key="rp_rerun",
            help="Drop the stored report and rebuild it; stages whose models and settings did not "
            "change are still read from the store.",
        )
    if launch or again:
        with trend_ui.guard("The reproduction"):
            submit_reproduce(ctx.zoo, ctx.store, ctx.dataset, scale, profile, device=ctx.device, rerun=again)
    job = None
    with trend_ui.guard("The reproduction"):
        job = stored_reproduction(ctx.zoo, ctx.store, ctx.dataset, scale, profile)
    if job is None:
        st.info(
            f"No {scale} reproduction on {ctx.dataset} yet: press **Run the reproduction** (models it needs and "
            "the zoo lacks are trained first)."
        )
        return
    if not job.meta.get("command"):  # (the run's own command, for a report the store kept)
        from trend_core.service.commands import reproduce_command

        job.meta["command"] = reproduce_command(ctx.dataset, scale, profile, ctx.home, ctx.device)
    report = trend_ui.job_panel(job)
    if report is None:
        return
    st.subheader("Findings")
    show_findings(report)
    downloads(report, f"trend-reproduce-{ctx.dataset}-{scale}-{profile}")
    st.subheader("Stages")
    show_stages(report)


with trend_ui.guard("The Reproduce page"):
    main()
