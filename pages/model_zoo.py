"""Model zoo: the trained models and their clean accuracies; train new specs, upload weights, delete."""

from __future__ import annotations

import itertools
import os
import tempfile
from pathlib import Path

import streamlit as st

import trend_ui

BITS = ["FP", 16, 8, 4, 2, 1]
WIDTHS = [0.25, 0.5, 1.0, 2.0]


def _bits(value) -> int:
    return 32 if value == "FP" else int(value)


def show_models(ctx, frame) -> None:
    """The zoo table (filterable) and the accuracy chart."""
    from trend_core.plots.zoo import accuracy_figure

    c1, c2, c3, c4 = st.columns(4)
    archs = c1.multiselect("Architecture", sorted(frame["arch"].dropna().unique()), key="zoo_f_arch")
    inputs = c2.multiselect("Input", sorted(frame["input"].dropna().unique()), key="zoo_f_input")
    opts = c3.multiselect("Optimizer", sorted(frame["optimizer"].dropna().unique()), key="zoo_f_opt")
    text = c4.text_input("Name contains", key="zoo_f_text")
    shown = frame
    for column, chosen in (("arch", archs), ("input", inputs), ("optimizer", opts)):
        if chosen:
            shown = shown[shown[column].isin(chosen)]
    if text:
        shown = shown[shown["name"].str.contains(text, case=False, regex=False)]
    st.caption(
        f"{len(shown)} of {len(frame)} models; clean accuracy in % (test split; validation picks the "
        "best epoch), as in the paper's Tables IV-VI."
    )
    st.dataframe(
        shown,
        hide_index=True,
        width="stretch",
        key="zoo_table",
        column_config={
            "test acc %": st.column_config.NumberColumn(format="%.2f"),
            "val acc %": st.column_config.NumberColumn(format="%.2f"),
            "train s": st.column_config.NumberColumn(format="%.1f"),
        },
    )
    if not shown.empty:
        st.plotly_chart(accuracy_figure(shown), width="stretch", key="zoo_accuracy")
        trend_ui.download_frame(shown, f"{ctx.dataset}-zoo", key="dl_zoo")


def train_section(ctx) -> None:
    """Pickers whose cartesian product is the list of specs to train, launched as one job."""
    from trend_core.config.architectures import list_archs
    from trend_core.config.specs import DEFAULT_EPOCHS, INPUT_QUANTS, ModelSpec
    from trend_core.service.training import submit_training

    archs = list_archs(ctx.dataset)
    c1, c2, c3, c4 = st.columns(4)
    arch = c1.selectbox(
        "Architecture", archs, index=archs.index("resnet18") if "resnet18" in archs else 0, key="zoo_arch"
    )
    width = c2.selectbox(
        "Width",
        WIDTHS,
        index=0 if ctx.dataset in ("digits", "mnist") else 2,
        key="zoo_width",
        help="Channel multiplier; 0.25 keeps digits models small and fast.",
    )
    optimizer = c3.selectbox("Optimizer", ["sgd", "adam"], key="zoo_opt")
    epochs = c4.number_input("Epochs", 1, 1000, DEFAULT_EPOCHS.get(ctx.dataset, 30), key="zoo_epochs")
    c5, c6, c7, c8 = st.columns(4)
    seeds = c5.multiselect("Seeds", list(range(10)), default=[0], key="zoo_seeds")
    inputs = c6.multiselect(
        "Input quantization",
        list(INPUT_QUANTS),
        default=["FP"],
        key="zoo_inputs",
        help="Q<n>: n bits per pixel; HT: halftoning (HT-FS: Floyd-Steinberg).",
    )
    weights = c7.multiselect("Weight bits", BITS, default=["FP"], key="zoo_wbits")
    acts = c8.multiselect("Activation bits", BITS, default=["FP"], key="zoo_abits")
    combos = list(itertools.product(seeds, inputs, weights, acts))
    if not combos:
        st.info("Pick at least one seed, input quantization, weight and activation bit width.")
        return
    specs = [
        ModelSpec(
            dataset=ctx.dataset,
            arch=arch,
            width=width,
            optimizer=optimizer,
            seed=int(seed),
            input_quant=inp,
            weight_bits=_bits(w),
            act_bits=_bits(a),
            epochs=int(epochs),
            profile=ctx.profile,
        )  # a model trained under the authors profile is its own spec
        for seed, inp, w, a in combos
    ]
    missing = [s for s in specs if not ctx.zoo.has(s)]
    st.caption(
        f"{len(specs)} model{'s' if len(specs) != 1 else ''} selected, {len(missing)} not yet trained: "
        + ", ".join(s.short_name for s in specs[:12])
        + (" ..." if len(specs) > 12 else "")
    )
    if st.button(
        f"Train {len(missing)} model{'s' if len(missing) != 1 else ''}",
        type="primary",
        disabled=not missing,
        icon=":material/model_training:",
        key="zoo_train",
    ):
        job = submit_training(ctx.zoo, missing, ctx.device)
        trend_ui.remember_job("zoo-train", job)
        if job.finished:  # done at once (synchronous jobs): redraw the table with the new models
            st.rerun()
    trend_ui.job_panel(trend_ui.recalled_job("zoo-train", kind="train"), show_done=True)


def upload_section(ctx) -> None:
    """Adopt a user's state_dict for a spec; the file is read as tensors only, never unpickled as code."""
    from trend_core.config.architectures import list_archs

    st.caption(
        f"Accepted architectures for {ctx.dataset}: {', '.join(list_archs(ctx.dataset))} (name the one the "
        "weights belong to in the model name, with its width, input quantization, optimizer and seed). An "
        "imported model is marked as imported and kept out of families and seed statistics unless you "
        "include it there."
    )
    name = st.text_input(
        "Model name (the spec the weights belong to)", placeholder="digits/resnet18-w0.25/Q2/sgd/s0", key="zoo_up_name"
    )
    upload = st.file_uploader(
        "State dict (.safetensors, .pt or .pth)", type=["safetensors", "pt", "pth"], key="zoo_up_file"
    )
    exists = trend_ui.zoo_has(ctx, name)
    replace = exists and st.checkbox(f"Replace the {name.strip()} already in the zoo", key="zoo_up_replace")
    if not st.button(
        "Import weights",
        disabled=upload is None or not name.strip() or (exists and not replace),
        icon=":material/upload:",
        key="zoo_up_go",
    ):
        return
    suffix = Path(upload.name).suffix.lower()
    fd, tmp = tempfile.mkstemp(suffix=suffix, prefix="trend-upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getvalue())
        with st.spinner("Checking the weights and measuring accuracy"):
            meta = ctx.zoo.import_state_dict(name.strip(), tmp, display_name=upload.name, replace=replace)
    finally:
        os.unlink(tmp)
    acc = meta.get("test_acc")
    st.success(
        f"Imported {meta['name']}"
        + (f": test accuracy {100 * acc:.2f}%" if acc is not None else "")
        + "; it is listed as imported (source column), not as a trained seed."
    )


def network_section(ctx) -> None:
    """Adopt a network defined outside this project, a torch.export program (.pt2), as user/<dataset>/<name>; the
    archive is checked to load without running pickled code, then run on the dataset's images."""
    from trend_core.models.imported import TRANSFORMS

    st.caption(
        f"A network this project does not define, saved with `torch.export.save(torch.export.export(net.eval(), "
        f"(example,)), 'net.pt2')`, for {ctx.dataset} images. It joins the zoo as user/{ctx.dataset}/<name> "
        "and can be attacked, put in transfer runs and ensembles, audited and exported like any zoo model."
    )
    c1, c2 = st.columns(2)
    slug = c1.text_input("Name (lowercase letters, digits, - or _)", placeholder="my-net", key="zoo_net_name").strip()
    expects = c2.radio(
        "It takes",
        ["pixels", "normalized"],
        horizontal=True,
        key="zoo_net_expects",
        format_func={"pixels": "pixels in [0, 1]", "normalized": "(x - mean) / std"}.get,
    )
    mean = std = None
    if expects == "normalized":
        c3, c4 = st.columns(2)
        mean = c3.text_input("Mean per channel (commas)", placeholder="0.5", key="zoo_net_mean").replace(",", " ")
        std = c4.text_input("Std per channel (commas)", placeholder="0.25", key="zoo_net_std").replace(",", " ")
        mean, std = (mean.split() or None), (std.split() or None)
    transform = st.selectbox(
        "Input defence it sits behind (run with its BPDA gradient)",
        [None, *TRANSFORMS],
        format_func=lambda t: "none" if t is None else t,
        key="zoo_net_transform",
    )
    upload = st.file_uploader("Network (.pt2)", type=["pt2"], key="zoo_net_file")
    name = f"user/{ctx.dataset}/{slug}"
    exists = bool(slug) and trend_ui.zoo_has(ctx, name)
    replace = exists and st.checkbox(f"Replace the {name} already in the zoo", key="zoo_net_replace")
    if not st.button(
        "Import network",
        disabled=upload is None or not slug or (exists and not replace),
        icon=":material/upload:",
        key="zoo_net_go",
    ):
        return
    fd, tmp = tempfile.mkstemp(suffix=".pt2", prefix="trend-upload-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(upload.getvalue())
        with st.spinner("Checking the network and measuring its accuracy"):
            meta = ctx.zoo.import_program(
                name, tmp, expects, mean, std, transform, replace=replace, display_name=upload.name
            )
    finally:
        os.unlink(tmp)
    acc = meta.get("test_acc")
    st.success(
        f"Imported {meta['name']}"
        + (f": test accuracy {100 * acc:.2f}%" if acc is not None else "")
        + "; pick it on the Transferability page to measure how attacks transfer to and from it."
    )


def delete_section(ctx, frame) -> None:
    names = st.multiselect("Models to delete", list(frame["name"]), key="zoo_del_names")
    sure = st.checkbox("Yes, delete their checkpoints", key="zoo_del_sure")
    if st.button("Delete", disabled=not (names and sure), icon=":material/delete:", key="zoo_del_go"):
        removed = [n for n in names if ctx.zoo.delete(n)]
        st.session_state.pop("zoo_del_names", None)
        st.session_state["zoo_deleted"] = f"Deleted {len(removed)} model{'s' if len(removed) != 1 else ''}."
        st.rerun()
    if "zoo_deleted" in st.session_state:
        st.success(st.session_state.pop("zoo_deleted"))


def main() -> None:
    trend_ui.page_intro(
        "Model zoo",
        "The trained models with their clean accuracy. Train new ones from the "
        "pickers (every combination is one model), upload your own weights, or delete.",
    )
    ctx = trend_ui.context()
    frame = trend_ui.zoo_frame(ctx.models())
    trend_ui.zoo_problems(ctx)
    models_tab, train_tab, upload_tab, network_tab, delete_tab = st.tabs(
        ["Models", "Train", "Upload weights", "Import a network (.pt2)", "Delete"]
    )
    imported_only = (  # evaluation data the user imported: no spec trains on it or takes uploaded weights
        f"{ctx.dataset} is data you imported (evaluation images only), so its networks are imported, not trained "
        "here: use the Import a network (.pt2) tab."
    )
    with models_tab:
        if frame.empty:
            trend_ui.empty_state(
                f"No {ctx.dataset} networks in {ctx.home} yet: import one in the Import a network (.pt2) tab."
                if ctx.imported_data
                else f"No {ctx.dataset} models in {ctx.home} yet: train some in the Train tab, or build a starter "
                "zoo on the Overview page."
            )
        else:
            show_models(ctx, frame)
    with train_tab, trend_ui.guard("Training"):
        if ctx.imported_data:
            st.info(imported_only)
        else:
            train_section(ctx)
    with upload_tab, trend_ui.guard("The upload"):
        if ctx.imported_data:
            st.info(imported_only)
        else:
            upload_section(ctx)
    with network_tab, trend_ui.guard("The network import"):
        network_section(ctx)
    with delete_tab:
        if frame.empty:
            st.caption("Nothing to delete.")
        else:
            delete_section(ctx, frame)


with trend_ui.guard("The Model zoo page"):
    main()
