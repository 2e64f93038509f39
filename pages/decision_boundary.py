"""Decision boundary: the class of every point of a 2-D slice of input space around one test image (the TREND paper, Sec. 8)."""

from __future__ import annotations

import streamlit as st

import trend_ui

GALLERY_SIZE = 24  # thumbnails in the gallery (the first test images)
GALLERY_COLUMNS = 12
THUMB_PX = 64


@st.cache_data(show_spinner=False)
def gallery(dataset: str, count: int) -> tuple[list, list[int]]:
    """Thumbnails (uint8 arrays) and labels of the first ``count`` test images."""
    from trend_core.config.datasets import get_info
    from trend_core.models.members import test_images
    from trend_core.plots.boundary import gallery_images

    x, y = test_images(dataset, count)
    scale = max(1, THUMB_PX // get_info(dataset).image_size)
    return gallery_images(x, scale), [int(v) for v in y]


def choose_image(ctx) -> int:
    """A gallery of test images and a picker; returns the chosen index."""
    from trend_core.config.datasets import get_info

    names = get_info(ctx.dataset).class_names
    thumbs, labels = gallery(ctx.dataset, GALLERY_SIZE)
    st.markdown("**Image** (the first test images; the label is the true class)")
    columns = st.columns(GALLERY_COLUMNS)
    for i, (thumb, label) in enumerate(zip(thumbs, labels)):
        columns[i % GALLERY_COLUMNS].image(thumb, caption=f"#{i}: {names[label]}", width=THUMB_PX)
    return st.selectbox(
        "Image", list(range(len(thumbs))), key="db_image", format_func=lambda i: f"#{i} (class {names[labels[i]]})"
    )


def choose_grid(ctx) -> tuple[list[str], int, float]:
    """One or two models, the grid resolution and its range."""
    from trend_core.config.datasets import get_info
    from trend_core.config.labels import paper_picks
    from trend_core.service.defaults import BOUNDARY_INPUTS, BOUNDARY_RESOLUTION, boundary_span

    metas = ctx.models()
    label_of = trend_ui.model_labels(metas)
    names = list(label_of)
    info = get_info(ctx.dataset)
    default_span = boundary_span(ctx.dataset)
    c1, c2, c3 = st.columns([2, 1, 1])
    models = c1.multiselect(
        "Models (one or two; the first gives the x direction)",
        names,
        default=paper_picks(names, BOUNDARY_INPUTS),
        format_func=label_of.get,
        key="db_models",
        max_selections=2,
    )
    resolution = c2.slider(
        "Grid points per axis",
        11,
        101,
        BOUNDARY_RESOLUTION,
        step=2,
        key="db_resolution",
        help="Odd, so the image itself is the centre point.",
    )
    span = c3.slider(
        "Range (L2 distance from the image)",
        0.0,
        round(4 * default_span, 2),
        round(default_span, 2),
        step=round(default_span / 20, 3),
        key="db_span",
        help=f"Each axis runs from -range to +range in pixel units; the default is twice the L2 size "
        f"of an L-inf ball of the default eps {info.default_eps:g}.",
    )
    return models, resolution, span


def show_result(ctx, result: dict) -> None:
    """Class maps side by side, the distances to the nearest boundary, downloads."""
    from trend_core.config.datasets import get_info
    from trend_core.plots.boundary import X_AXIS_LABEL, class_map_figure, grid_frame

    class_names = get_info(ctx.dataset).class_names
    names = result["names"]
    st.subheader(f"Class maps around image #{result['index']} (true class {class_names[result['label']]})")
    st.caption(
        f"x: the unit L2 gradient direction of {result['reference']}'s loss (where PGD climbs); y: a random "
        "direction orthogonal to it. Each point is the image moved by (x, y) in pixel space, clipped to [0, 1], "
        "and coloured by the class the model predicts; the cross marks the image itself."
    )
    fig = class_map_figure(
        [result["classes"][n] for n in names],
        names,
        result["x_offsets"],
        result["y_offsets"],
        class_names,
        x_label=f"{X_AXIS_LABEL} ({result['reference']})",
    )
    st.plotly_chart(fig, width="stretch", key="db_maps")
    distances = result["distances"].copy()
    distances["clean_pred"] = [class_names[int(c)] for c in distances["clean_pred"]]
    st.markdown(
        "**Distance to the nearest boundary** along each axis (L2, pixel units; empty: no boundary within the range)"
    )
    st.dataframe(distances.rename(columns={"clean_pred": "prediction"}), hide_index=True, width="stretch")
    st.markdown("**Download the distances**")
    trend_ui.download_frame(result["distances"], f"boundary-{result['index']}-distances", key="db_dl_dist")
    st.markdown("**Download the class of every grid point**")
    trend_ui.download_frame(
        grid_frame(result["classes"], result["x_offsets"], result["y_offsets"], class_names),
        f"boundary-{result['index']}-grid",
        key="db_dl_grid",
    )


def main() -> None:
    from trend_core.service.boundary import submit_boundary

    trend_ui.page_intro(
        "Decision boundary",
        "Where do a model's decision boundaries lie around one image? Each map "
        "classifies a 2-D slice of input space: the adversarial gradient direction against a random "
        "orthogonal one. Side by side, two models show whether input quantization pushes the boundary "
        "away (the TREND paper, Sec. 8, Fig. 4).",
    )
    ctx = trend_ui.context()
    if not trend_ui.has_models(ctx, 1, "A class map needs at least"):
        return
    with st.container(border=True):
        index = choose_image(ctx)
        models, resolution, span = choose_grid(ctx)
        launch = st.button("Draw the class maps", type="primary", icon=":material/play_arrow:", key="db_run")
    if launch:
        with trend_ui.launching("The decision boundary", "boundary"):
            job = submit_boundary(
                ctx.zoo, ctx.store, models, index, span=span, resolution=resolution, device=ctx.device
            )
            trend_ui.remember_job("boundary", job)
    result = trend_ui.slot_result(
        "boundary", "Pick an image and one or two models above, then press **Draw the class maps**."
    )
    if result is not None:
        show_result(ctx, result)


with trend_ui.guard("The Decision boundary page"):
    main()
