"""TREND Lab dashboard: `streamlit run app.py` (or `bash scripts/dev.sh app`).

Navigation over the pages in pages/, the shared sidebar (dataset, device, store folder) and the overview.
Torch is imported lazily (inside trend_core calls) so the server answers quickly.
"""

import streamlit as st

if __name__ == "__main__":  # (see the end of this file: a worker process imports nothing more)
    import trend_ui
    from trend_core.service.workers import prepare_workers
    from trend_ui.assets import apply_assets

PAGES = (  # (file, title, icon)
    ("pages/model_zoo.py", "Model zoo", ":material/inventory_2:"),
    ("pages/transferability.py", "Transferability", ":material/grid_on:"),
    ("pages/decision_boundary.py", "Decision boundary", ":material/scatter_plot:"),
    ("pages/ensemble_attacks.py", "Ensemble attacks", ":material/group_work:"),
    ("pages/trend_builder.py", "TREND builder", ":material/shield:"),
    ("pages/tm_curve.py", "TM curve", ":material/show_chart:"),
    ("pages/audit.py", "Robustness audit", ":material/policy:"),
    ("pages/reproduce.py", "Reproduce", ":material/fact_check:"),
)


def overview() -> None:
    """What the app is for and what is in the zoo; a one-click starter zoo when it is empty."""
    trend_ui.page_intro(
        "TREND Lab",
        "Adversarial images crafted on one network often fool another: they transfer. TREND "
        "(Transferability-based Robust ENsemble Design) measures how much they transfer between models that "
        "differ in architecture, seed, optimizer and input, weight or activation quantization, and picks the "
        "ensemble whose members transfer least to each other, so one attack rarely fools the majority.",
    )
    ctx = trend_ui.context()
    with trend_ui.guard("The overview"):
        st.markdown(
            "1. **Model zoo**: train models (architecture, optimizer, seed, input / weight / activation bits) or "
            "upload your own weights.\n"
            "2. **Transferability**: attack source models and read the TM heatmap: how often their adversarial "
            "images fool each target.\n"
            "3. **Decision boundary** and **Ensemble attacks**: see why some models resist, and which ensemble "
            "attack is the fair benchmark.\n"
            "4. **TREND builder**: pick the ensemble whose members transfer least, and measure its robustness.\n"
            "5. **TM curve**: predict transferability at other attack strengths from a few measured points."
        )
        defender_path()
        frame = trend_ui.zoo_frame(ctx.models())
        st.subheader(f"The {ctx.dataset} zoo")
        if frame.empty:
            trend_ui.empty_state(
                f"The zoo at {ctx.home} has no {ctx.dataset} networks yet: {ctx.dataset} is data you imported, so "
                "import your networks for it (.pt2) on the Model zoo page."
                if ctx.imported_data
                else f"The zoo at {ctx.home} has no {ctx.dataset} models yet: build a starter zoo "
                "below, or train your own on the Model zoo page."
            )
        else:
            st.caption(f"{len(frame)} models in {ctx.home}; clean accuracy on the test split.")
            st.dataframe(
                frame[["label", "arch", "input", "weight bits", "act bits", "optimizer", "seed", "test acc %", "name"]],
                hide_index=True,
                width="stretch",
            )
        trend_ui.zoo_actions.build_zoo_panel(ctx)


DEFENDER_STEPS = (  # (page, link label, what to do there)
    ("pages/model_zoo.py", "1. Import", 'your networks (.pt2) in the Model zoo\'s "Import a network" tab'),
    ("pages/transferability.py", "2. Matrix", "measure how attacks transfer among them and the zoo's models"),
    ("pages/trend_builder.py", "3. Choose", "let TREND rank ensembles of your networks by low transferability"),
    ("pages/trend_builder.py", "4. Audit", "check the chosen vote's robustness with the audit (section 4)"),
    ("pages/trend_builder.py", "5. Export", "download the vote as one .pt2 with its robustness card (section 5)"),
)


def defender_path() -> None:
    """The defender's path through the pages, for networks defined outside this project."""
    with st.container(border=True):
        st.markdown(
            "**Defender: import → matrix → choose → audit → export.** Bring your own networks (torch.export "
            ".pt2), pick the ensemble whose members transfer least, audit it, and ship it as one file."
        )
        for column, (page, label, what) in zip(st.columns(len(DEFENDER_STEPS)), DEFENDER_STEPS):
            column.page_link(page, label=label, icon=":material/arrow_forward:")
            column.caption(what)


def navigation() -> st.navigation:
    pages = [st.Page(overview, title="Overview", icon=":material/home:", default=True)]
    pages += [st.Page(path, title=title, icon=icon) for path, title, icon in PAGES]
    return st.navigation(pages)


# Streamlit runs this file as __main__; the worker processes the dashboard starts (a fork server's children)
# import it again as __mp_main__, where nothing must be drawn or started.
if __name__ == "__main__":
    st.set_page_config(page_title="TREND Lab", page_icon=":material/shield:", layout="wide")
    apply_assets()
    prepare_workers()  # worker processes for small-image attacks start in the background, once per server
    nav = navigation()
    trend_ui.sidebar()
    nav.run()
