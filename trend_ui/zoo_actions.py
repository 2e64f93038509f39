"""Building a starter zoo from the page: the dataset's 12-model preset (digits, MNIST) or a quick 3-model demo."""

from __future__ import annotations

import streamlit as st

from trend_core.config.presets import QUICK_DEMO  # (plain names, no torch)

from .jobs import job_panel, recalled_job, remember_job

# How long each preset takes on an idle 2-core CPU (README "Timings on a CPU"), for the button's help.
PRESET_TIME = {"digits": "about 1.5 minutes", "mnist": "about 7 minutes (the embedded 10,000 digits)"}


def build_zoo_panel(ctx) -> None:
    """Buttons that train the dataset's default preset (or, on digits, the quick demo) as a job, and its progress;
    then (unless switched off) every page's default run in the background, so a demo's first clicks are instant."""
    from trend_core.config.presets import PRESETS
    from trend_core.config.specs import ModelSpec
    from trend_core.models.zoo import preset_specs
    from trend_core.service.training import submit_training
    from trend_core.service.warmup import submit_warmup

    job, warm = None, False
    if ctx.dataset in PRESETS:
        preset = preset_specs(ctx.dataset)
        missing = [spec for spec in preset if not ctx.zoo.has(spec)]
        empty = not ctx.models()
        left, right = st.columns(2)
        label = (
            f"Build the default {ctx.dataset} zoo"
            if len(missing) == len(preset)
            else f"Complete the default {ctx.dataset} zoo ({len(missing)} missing)"
        )
        if missing and left.button(
            label,
            type="primary",
            icon=":material/construction:",
            key="build_default_zoo",
            help=f"The 12-model {ctx.dataset} preset (input, weight and activation "
            "quantization, seeds, VGG, Adam); "
            f"{PRESET_TIME.get(ctx.dataset, 'minutes')} on an idle 2-core CPU.",
        ):
            job = submit_training(ctx.zoo, preset, ctx.device)
        demo = ctx.dataset == "digits" and empty
        if demo and right.button(
            "Quick demo zoo (3 models)",
            icon=":material/bolt:",
            key="build_demo_zoo",
            help="FP, Q2 and Q1 ResNet18s trained for 4 epochs: about 10 s on a CPU, for a first look.",
        ):
            job = submit_training(ctx.zoo, [ModelSpec.parse(n) for n in QUICK_DEMO], ctx.device)
        if missing or demo:
            warm = st.toggle(
                "Then compute every page's default run",
                value=True,
                key="warm_defaults",
                help="In the background after training (minutes), cheapest first, so that the first "
                "click on each page's run button is served from the store at once.",
            )
    elif not ctx.imported_data:  # (an imported dataset's networks are imported: the message above says so)
        st.info(f"There is no preset zoo for {ctx.dataset}; train models on the Model zoo page.")
    if job is not None:
        remember_job("zoo-build", job)
        if warm:
            remember_job(
                "zoo-warmup", submit_warmup(ctx.zoo, ctx.store, ctx.dataset, ctx.device, ctx.profile, after=job)
            )
        if job.finished:  # done at once (synchronous jobs): redraw the zoo table
            st.rerun()
    job_panel(recalled_job("zoo-build", kind="train"), show_done=True)
    warmed = job_panel(recalled_job("zoo-warmup", kind="warmup"), show_done=True)
    for problem in (warmed or {}).get("failed", []):
        st.warning(f"A default run did not finish ({problem}); its page says why when you press its button.")
