"""The Gradio layout of ``charmeta app``: four tabs over ``analyze`` / ``batch`` / ``dataset``.

Why every handler catches: a Gradio handler that raises shows a generic error
(or, with ``show_error``, the exception text); the app instead answers every bad
input with a one-line message in the tab's status box, and logs the traceback
on the server only. Handlers have stable ``api_name``s so ``gradio_client`` and
the browser tests call the same endpoints a person clicks.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: no telemetry, no version check

import gradio as gr  # noqa: E402

from charmeta.app import batch as batch_mod  # noqa: E402
from charmeta.app.analyze import NO_MODEL, AppCore, image_examples, text_examples  # noqa: E402
from charmeta.app.dataset import DatasetError, DatasetView, load_dataset  # noqa: E402
from charmeta.app.views import TABLE_HEADERS, RecordView, error_view  # noqa: E402

log = logging.getLogger("charmeta.app")

#: Largest upload Gradio accepts at all (the Batch tab then applies its own 20 MB limit).
MAX_FILE_SIZE = "25mb"
TITLE = "charmeta — character attributes from tags, prompts, prose and images"


def image_upload(**kwargs: Any) -> gr.Image:
    """``gr.Image`` whose value reaches the handler as the uploaded file's path, undecoded.

    Why: ``gr.Image`` decodes uploads with PIL before the handler runs, so a broken or
    non-image file ends in Gradio's generic "Error". Passing the path lets the core's
    guarded decoder (``charmeta.images.decode``) turn it into an ``invalid`` record with
    its reason, as in the pipeline. Set on the instance, not by subclassing: a Gradio
    component subclass makes Gradio write a ``.pyi`` stub next to this module at import.
    """
    comp = gr.Image(type="filepath", **kwargs)
    comp.preprocess = lambda payload: None if payload is None else str(payload.path)  # type: ignore[method-assign]
    return comp


def _record_outputs(view: RecordView) -> tuple[Any, ...]:
    backends = "**backends that ran:** " + (", ".join(view.backends) if view.backends else "none")
    return view.status, backends, view.record, view.clean, view.rows


def _internal(exc: BaseException) -> str:
    log.exception("app handler failed")
    return f"internal error ({type(exc).__name__}): {str(exc).splitlines()[0] if str(exc) else 'no message'}"


def build_app(core: AppCore | None = None, dataset_dir: str = "out/demo", work_dir: str | None = None) -> gr.Blocks:
    """The Blocks app; ``core`` is shared by all handlers (one engine per process)."""
    core = core or AppCore()
    work = Path(work_dir or tempfile.mkdtemp(prefix="charmeta-app-"))
    examples = text_examples()
    images = image_examples()

    def on_text(text: str) -> tuple[Any, ...]:
        try:
            return _record_outputs(core.analyze_text(text))
        except Exception as exc:
            return _record_outputs(error_view(_internal(exc)))

    def on_image(image: str | None, caption: str, counter: str, model: str) -> tuple[Any, ...]:
        try:
            res = core.analyze_image(image, caption, model=model or NO_MODEL, counter=counter or "auto")
            return (res.boxed, *_record_outputs(res.view))
        except Exception as exc:
            return (None, *_record_outputs(error_view(_internal(exc))))

    def on_batch(file: str | None, counter: str, model: str) -> tuple[Any, ...]:
        try:
            out = tempfile.mkdtemp(prefix="batch-", dir=work)
            res = batch_mod.run_batch(file, core, out, model=model or NO_MODEL, counter=counter or "auto")
        except Exception as exc:
            return f"**error:** {_internal(exc)}", [], None, None
        return res.message, res.rows, res.clean_path, res.parquet_path

    def on_dataset(folder: str) -> tuple[Any, ...]:
        try:
            ds = load_dataset(folder)
        except DatasetError as exc:
            return (f"**error:** {exc}", *_empty_dataset())
        except Exception as exc:
            return (f"**error:** {_internal(exc)}", *_empty_dataset())
        return (ds.summary(), *_dataset_outputs(ds))

    def on_attribute(folder: str, attribute: str) -> Any:
        try:
            return _distribution(load_dataset(folder), attribute)
        except Exception:
            return _frame({}, "value")

    with gr.Blocks(title="charmeta", analytics_enabled=False) as app:
        gr.Markdown(
            f"# {TITLE}\nThe same core as `charmeta run` and `charmeta extract` "
            "(`charmeta.engine.Engine`, `charmeta.images.api`): nothing here is a separate model."
        )
        with gr.Tab("Image", id="image"):
            with gr.Row():
                with gr.Column(scale=1):
                    img_in = image_upload(label="image", sources=["upload"], height=320, elem_id="image-input")
                    img_caption = gr.Textbox(label="caption (optional: fused with the pixels)", lines=2)
                    with gr.Row():
                        img_counter = gr.Dropdown(
                            core.counters, value="auto", label="face detector", elem_id="image-counter"
                        )
                        img_model = gr.Dropdown(core.image_models, value=core.default_image_model, label="image model")
                    img_btn = gr.Button("Extract from image", variant="primary")
                    if images:
                        gr.Examples(
                            [list(x) for x in images],
                            inputs=[img_in, img_caption],
                            label="examples from samples/",
                            elem_id="image-examples",
                        )
                    else:
                        gr.Markdown("_no images in the bundled sample: upload one_")
                with gr.Column(scale=1):
                    img_out = gr.Image(
                        label="detected faces", type="pil", interactive=False, height=320, elem_id="image-faces"
                    )
                    img_status = gr.Markdown(elem_id="image-status")
                    img_backends = gr.Markdown(elem_id="image-backends")
            with gr.Row():
                img_json = gr.JSON(label="record (charmeta extract JSON)", elem_id="image-record")
                img_clean = gr.JSON(label="clean export record", elem_id="image-clean")
            img_table = gr.Dataframe(headers=TABLE_HEADERS, label="attributes", wrap=True, interactive=False)
            img_btn.click(
                on_image,
                [img_in, img_caption, img_counter, img_model],
                [img_out, img_status, img_backends, img_json, img_clean, img_table],
                api_name="extract_image",
            )

        with gr.Tab("Text", id="text"):
            txt_in = gr.Textbox(
                label="tags, a prompt or a description", lines=4, elem_id="text-input", max_length=64_000
            )
            txt_btn = gr.Button("Extract from text", variant="primary", elem_id="text-submit")
            gr.Examples(
                [[e["text"]] for e in examples],
                inputs=[txt_in],
                example_labels=[e["label"] for e in examples],
                label="examples from the bundled sample",
            )
            txt_status = gr.Markdown(elem_id="text-status")
            txt_backends = gr.Markdown(elem_id="text-backends")
            with gr.Row():
                txt_json = gr.JSON(label="record (charmeta extract JSON)", elem_id="text-record")
                txt_clean = gr.JSON(label="clean export record", elem_id="text-clean")
            txt_table = gr.Dataframe(headers=TABLE_HEADERS, label="attributes", wrap=True, interactive=False)
            txt_btn.click(
                on_text, [txt_in], [txt_status, txt_backends, txt_json, txt_clean, txt_table], api_name="extract_text"
            )

        with gr.Tab("Batch", id="batch"):
            gr.Markdown(
                f"Upload JSONL / JSON / CSV / Parquet (a `text`, `tags`, `ordered_tags`, `caption` or `tag_string` "
                f"field) or a .zip of images with optional `.txt` captions: up to {batch_mod.MAX_RECORDS} records, "
                f"{batch_mod.MAX_UPLOAD_BYTES // 2**20} MB. Read by the pipeline's own shard readers."
            )
            with gr.Row():
                b_file = gr.File(
                    label="file",
                    file_types=[*batch_mod.TEXT_EXTS, ".zip"],
                    type="filepath",
                    elem_id="batch-file",
                )
                with gr.Column():
                    b_counter = gr.Dropdown(core.counters, value="auto", label="face detector (zip of images)")
                    b_model = gr.Dropdown(core.image_models, value=core.default_image_model, label="image model")
                    b_btn = gr.Button("Run batch", variant="primary", elem_id="batch-submit")
            b_msg = gr.Markdown(elem_id="batch-status")
            b_table = gr.Dataframe(
                headers=batch_mod.TABLE_HEADERS, label="results", wrap=True, interactive=False, elem_id="batch-results"
            )
            with gr.Row():
                b_clean = gr.File(label="clean JSONL (ok records)", interactive=False, elem_id="batch-clean")
                b_rich = gr.File(label="rich Parquet (every record)", interactive=False, elem_id="batch-rich")
            b_btn.click(on_batch, [b_file, b_counter, b_model], [b_msg, b_table, b_clean, b_rich], api_name="batch")

        with gr.Tab("Dataset", id="dataset"):
            with gr.Row():
                d_folder = gr.Textbox(value=dataset_dir, label="output folder of `charmeta run`", elem_id="ds-folder")
                d_btn = gr.Button("Open", variant="primary", elem_id="ds-open")
            d_summary = gr.Markdown(elem_id="ds-summary")
            with gr.Row():
                d_status = gr.BarPlot(
                    x="status",
                    y="records",
                    title="records per status",
                    height=260,
                    y_lim=[0, None],
                    sort="-y",
                    elem_id="ds-status-plot",
                )
                with gr.Column():
                    d_attr = gr.Dropdown(_attribute_names(), value="Hair Color", label="attribute")
                    d_dist = gr.BarPlot(
                        x="value", y="records", title="value distribution", height=260, y_lim=[0, None], sort="-y"
                    )
            gr.Markdown("### Quarantine (invalid records, with their reasons)")
            d_reasons = gr.Dataframe(headers=["reason", "records"], interactive=False, elem_id="ds-reasons")
            d_quar_note = gr.Markdown()
            d_quar = gr.Dataframe(interactive=False, wrap=True, elem_id="ds-quarantine")
            gr.Markdown("### Character profiles")
            d_prof_note = gr.Markdown(elem_id="ds-profiles-note")
            d_prof = gr.Dataframe(interactive=False, wrap=True, elem_id="ds-profiles")
            gr.Markdown("### Duplicate clusters")
            d_dup_note = gr.Markdown(elem_id="ds-dups-note")
            d_dup = gr.Dataframe(interactive=False, wrap=True, elem_id="ds-dups")
            d_outputs = [d_summary, d_status, d_dist, d_reasons, d_quar_note, d_quar, d_prof_note, d_prof]
            d_outputs += [d_dup_note, d_dup]
            d_btn.click(on_dataset, [d_folder], d_outputs, api_name="dataset")
            d_attr.change(on_attribute, [d_folder, d_attr], [d_dist], api_name=False)
            app.load(on_dataset, [d_folder], d_outputs, api_name=False)
    return app


def _attribute_names() -> list[str]:
    from charmeta.contract import ATTRIBUTES

    return [a.key for a in ATTRIBUTES]


def _frame(counts: dict[str, int], label: str) -> Any:
    import pandas as pd

    return pd.DataFrame({label: list(counts.keys()), "records": [int(v) for v in counts.values()]})


def _distribution(ds: DatasetView, attribute: str) -> Any:
    return _frame(ds.distributions.get(attribute, {}), "value")


def _table(tv: Any) -> Any:
    """The table, hidden while the file does not exist (its note says why)."""
    import pandas as pd

    if not tv.headers:
        return gr.update(value=pd.DataFrame(), visible=False)
    return gr.update(value=pd.DataFrame(tv.rows, columns=tv.headers), visible=True)


def _empty_dataset() -> tuple[Any, ...]:
    import pandas as pd

    hidden = gr.update(value=pd.DataFrame(), visible=False)
    return _frame({}, "status"), _frame({}, "value"), pd.DataFrame(), "", hidden, "", hidden, "", hidden


def _dataset_outputs(ds: DatasetView) -> tuple[Any, ...]:
    import pandas as pd

    reasons = pd.DataFrame({"reason": list(ds.quarantine_by_reason), "records": list(ds.quarantine_by_reason.values())})
    prof, dup = ds.tables["character_profiles"], ds.tables["dedup_clusters"]
    return (
        _frame(ds.status_counts, "status"),
        _distribution(ds, "Hair Color"),
        reasons,
        ds.quarantine.note,
        _table(ds.quarantine),
        prof.note,
        _table(prof),
        dup.note,
        _table(dup),
    )


def launch(
    core: AppCore | None = None,
    port: int = 7860,
    dataset_dir: str = "out/demo",
    host: str = "127.0.0.1",
    block: bool = True,
) -> gr.Blocks:
    """Serve the app on ``host:port`` (loopback by default); ``block=False`` returns once it listens."""
    work = tempfile.mkdtemp(prefix="charmeta-app-")
    app = build_app(core, dataset_dir, work)
    app.queue(default_concurrency_limit=2)
    app.launch(
        server_name=host,
        server_port=port,
        max_file_size=MAX_FILE_SIZE,
        allowed_paths=[work],
        ssr_mode=False,
        show_error=False,
        quiet=True,
        prevent_thread_lock=not block,
        footer_links=["api"],
        theme=gr.themes.Soft(),
    )
    return app
