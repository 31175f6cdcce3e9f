"""The Blocks app: a header and one builder per tab. No model code here."""

from __future__ import annotations

import math

import gradio as gr

from aigc_demo.config import AppConfig, ServerConfig
from aigc_demo.registry import PipelineRegistry
from aigc_demo.ui.evaluate_tab import build_evaluate_tab
from aigc_demo.ui.image_tab import build_image_tab
from aigc_demo.ui.latent_tab import build_latent_tab
from aigc_demo.ui.session_state import lazy_session_configs
from aigc_demo.ui.story_tab import build_story_tab
from aigc_demo.ui.strings import t
from aigc_demo.ui.text_tab import build_text_tab
from aigc_demo.ui.tune_image_tab import build_picture_tune_tab
from aigc_demo.ui.tune_tab import build_tune_tab
from aigc_demo.ui.verify_tab import build_verify_tab

CSS = """
#chatbot { min-height: 420px; }
footer { visibility: hidden; }
/* Small generated images shown large: the browser scales whole pixels instead of blurring them. */
.pixels img { image-rendering: pixelated; }
/* Previews whole within the strip's height: a lone preview would be a square as wide as the strip, cut off. */
#image-previews .thumbnail-item { max-height: 180px; }
#image-previews .thumbnail-item img { object-fit: contain; }
"""


def build_demo(registry: PipelineRegistry, cfg: AppConfig) -> gr.Blocks:
    # Gradio keeps a copy of every file a handler returns; drop copies older than a day, checked hourly.
    with gr.Blocks(title="AIGC Studio", delete_cache=(3600, 86400)) as demo:
        gr.Markdown(f"# {t('app_title')}")
        gr.Markdown(t("app_subtitle"))
        with gr.Tabs():
            with gr.Tab(t("tab_text"), id="text"):
                build_text_tab(registry.get("text"), registry.failures.get("text"), registry.get("tune"))
            with gr.Tab(t("tab_image"), id="image"):
                build_image_tab(registry.get("image"), registry.failures.get("image"))
            with gr.Tab(t("tab_latent"), id="latent"):
                build_latent_tab(registry.get("latent"), registry.failures.get("latent"))
            with gr.Tab(t("tab_story"), id="story"):
                build_story_tab(registry.get("story"), registry.failures.get("story"))
            with gr.Tab(t("tab_tune"), id="tune"), gr.Tabs():  # the language model, the diffusion model
                with gr.Tab(t("tune_tab_text"), id="tune-text-tab"):
                    build_tune_tab(registry.get("tune"), registry.failures.get("tune"))
                with gr.Tab(t("tune_tab_pictures"), id="tune-pictures-tab"):
                    build_picture_tune_tab(registry.get("tune_image"), registry.failures.get("tune_image"))
            with gr.Tab(t("tab_evaluate"), id="evaluate"):
                build_evaluate_tab(
                    registry.get("image"),
                    registry.get("text"),
                    registry.failures.get("image"),
                    registry.get("tune"),
                    registry.get("latent"),
                )
            with gr.Tab(t("tab_verify"), id="verify"):
                build_verify_tab(
                    registry.get("provenance"),
                    registry.failures.get("provenance"),
                    registry.get("text"),
                    registry.get("image"),
                )
    # A bounded queue: beyond max_size visitors get "busy, try again" instead of an endless wait.
    demo.queue(
        max_size=cfg.server.queue_max_size,
        default_concurrency_limit=cfg.server.heavy_concurrency,
    )
    calm_queue(demo, cfg.server.queue_poll_s)
    lazy_session_configs()
    return demo


def calm_queue(demo: gr.Blocks, poll_s: float) -> None:
    """Gradio's queue polls for work to start (every 1 ms) and for progress to send (10 ms); both wake the
    server whether or not anything happens. Poll at ``poll_s`` (kept within 1-100 ms: 0 would spin, a long
    poll delays every event) and send progress at most 20 times a second.

    After every event Gradio also rebuilds the summary behind its monitoring page, a pandas table of the last
    10,000 events (5-16 ms of Python each time, measured on a 2-core Xeon, 2026-12-02), more than a slider's
    whole picture; the app does not enable that page, so the summary is rebuilt every 1,000 events."""
    queue = demo._queue  # no public setting for any of these (Gradio 6.31)
    poll_s = poll_s if math.isfinite(poll_s) else ServerConfig.queue_poll_s
    queue.sleep_when_free = min(max(poll_s, 0.001), 0.1)
    queue.progress_update_sleep_when_free = max(queue.sleep_when_free, 0.05)
    queue.ANAYLTICS_CACHE_FREQUENCY = 1000  # sic: Gradio's spelling
