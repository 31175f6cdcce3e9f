"""A real browser (Debian's chromium through Playwright) clicks through the app and saves screenshots."""

from __future__ import annotations

import shutil

import pytest

from aigc_demo.config import ImageConfig

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    playwright = pytest.importorskip("playwright.sync_api")
    if not shutil.which("chromium") and not __import__("os").path.exists(CHROMIUM):
        pytest.fail("Debian's chromium is not installed: apt-get install -y chromium")
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield b
        b.close()


OPEN_PAGES = []


@pytest.fixture(autouse=True)
def close_pages():
    """A page left open keeps its jobs running in the shared app and the next test waits behind them."""
    yield
    while OPEN_PAGES:
        OPEN_PAGES.pop().close()


def open_page(browser, url, locale="en-US"):
    page = browser.new_page(viewport={"width": 1280, "height": 1000}, locale=locale)
    OPEN_PAGES.append(page)
    page.goto(url)
    page.wait_for_selector("#chat-message textarea", timeout=60_000)
    return page


def test_text_tab_streams_and_stops(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.fill("#chat-message textarea", "Write a long story about a lighthouse keeper.")
    page.click("#chat-send")
    bot = page.locator("#chatbot .bot, #chatbot [data-testid='bot']").last
    bot.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => { const b = [...document.querySelectorAll('#chatbot .bot, #chatbot [data-testid=\"bot\"]')];"
        " return b.length && b[b.length - 1].innerText.trim().length > 20; }",
        timeout=60_000,
    )
    first = bot.inner_text()
    page.wait_for_timeout(300)
    assert len(bot.inner_text()) >= len(first), "streamed text should keep growing"
    page.click("#chat-stop")
    page.wait_for_selector("#chat-stats:has-text('finish: stopped')", timeout=10_000)
    stopped = bot.inner_text()
    page.wait_for_timeout(1500)
    assert bot.inner_text() == stopped, "text kept arriving after Stop"
    assert len(stopped.strip()) > 20, "Stop should keep the partial reply"
    # Gradio's own cancel left red "Error" badges on the outputs now and then; Stop must end the job cleanly.
    assert page.locator(".error:visible").count() == 0, "Stop showed error badges"
    page.screenshot(path=str(artifacts_dir / "text-tab-chat.png"), full_page=True)
    tab_screenshot(page, "text")

    # The next message is answered: the worker was freed by Stop.
    page.fill("#chat-message textarea", "Say hi.")
    page.click("#chat-send")
    page.wait_for_function(
        "() => document.querySelectorAll('#chatbot .bot, #chatbot [data-testid=\"bot\"]').length >= 2",
        timeout=60_000,
    )
    # "finish: stop" (end of turn) or "length", not the first reply's "finish: stopped".
    page.wait_for_function(
        "() => /finish: (stop|length) /.test(document.querySelector('#chat-stats').innerText)",
        timeout=120_000,
    )
    assert "Say hi." in page.inner_text("#chatbot")
    page.screenshot(path=str(artifacts_dir / "text-tab-second-reply.png"), full_page=True)


def test_bad_input_shows_a_message_not_a_traceback(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.fill("#chat-message textarea", "   ")
    page.click("#chat-send")
    toast = page.locator(".toast-body, [data-testid='toast-body']").first
    toast.wait_for(timeout=30_000)
    assert "empty" in toast.inner_text().lower()
    assert "Traceback" not in page.content()
    page.screenshot(path=str(artifacts_dir / "text-tab-error.png"))


def test_chinese_ui(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url, locale="zh-CN")
    page.wait_for_selector("text=AIGC 工作室", timeout=30_000)
    # The Text tab: the model line and the preset names translated; the examples show only their message.
    assert page.get_by_text("模型 · 推理引擎").first.is_visible()
    page.get_by_text("参数", exact=True).first.click()  # the parameters accordion
    page.wait_for_function(  # the accordion renders its contents after the click
        "() => { const i = document.querySelector(\"input[aria-label='预设']\"); return i && i.value === '助手'; }",
        timeout=30_000,
    )
    text = page.inner_text("body")
    assert "__i18n__" not in text and "· engine" not in text and "Assistant:" not in text
    page.screenshot(path=str(artifacts_dir / "text-tab-zh.png"), full_page=True)


def _img_src(page, selector):
    return page.eval_on_selector(
        selector, "el => { const i = el.querySelector('img'); return i ? i.src : ''; }"
    )


def test_latent_tab_slider_moves_the_image(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Latent").click()
    page.locator("#latent-corpus .thumbnail-item").nth(5).click()
    page.wait_for_function(
        "() => { const i = document.querySelector('#latent-steered img'); return i && i.src; }",
        timeout=60_000,
    )
    before = _img_src(page, "#latent-steered")
    page.locator("#pc-slider-0 input[type=range]").fill("2.5")
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('#latent-steered img'); return i && i.src !== {before!r}; }}",
        timeout=30_000,
    )
    assert "corpus row" in page.inner_text("#latent-psnr")
    # A corpus pick has no original picture here: one image, labelled as the decode.
    assert not page.locator("#latent-original").is_visible()
    assert page.get_by_text("Decoded corpus latent").first.is_visible()
    # Thumbnail captions show whole (no ellipsis).
    clipped = page.evaluate(
        "() => [...document.querySelectorAll('#latent-corpus .caption-label')]"
        ".filter(c => c.scrollWidth > c.clientWidth).map(c => c.textContent)"
    )
    assert clipped == []
    page.screenshot(path=str(artifacts_dir / "latent-tab-slider.png"), full_page=True)
    tab_screenshot(page, "latent")


def test_latent_tab_in_chinese(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url, locale="zh-CN")
    page.get_by_role("tab", name="潜空间").click()
    page.wait_for_selector("#latent-input", timeout=30_000)
    editor = page.inner_text("#latent-input")
    assert "把图片拖到这里" in editor and "Layer" not in editor and "Drop" not in editor
    assert page.get_by_text("随机采样", exact=True).is_visible()
    page.screenshot(path=str(artifacts_dir / "latent-tab-zh.png"), full_page=True)


def test_latent_tab_samples_walk_and_map(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Latent").click()
    # Random samples.
    page.get_by_text("Random samples", exact=True).click()
    page.click("#latent-sample-btn")
    page.wait_for_selector("#latent-samples .thumbnail-item img", timeout=60_000)
    # Interpolation between two corpus items.
    page.locator("#latent-corpus .thumbnail-item").nth(2).click()
    steered = "() => { const i = document.querySelector('#latent-steered img'); return i && i.src; }"
    page.wait_for_function(steered, timeout=60_000)  # the pick is loaded (slow on a busy machine)
    first = _img_src(page, "#latent-steered")
    page.get_by_text("Interpolate (walk from A to B)").click()
    page.click("#latent-set-b")
    page.locator("#latent-corpus .thumbnail-item").nth(9).click()
    page.wait_for_function(
        f"() => {{ const i = document.querySelector('#latent-steered img'); return i && i.src !== {first!r}; }}",
        timeout=60_000,
    )
    page.click("#latent-walk-btn")
    page.wait_for_selector("#latent-strip img", timeout=60_000)
    page.wait_for_selector("#latent-mp4 video", timeout=60_000)
    # Clicking the map decodes that spot and lists neighbours.
    page.get_by_text("Map of the corpus").click()
    page.locator("#latent-map img").click(position={"x": 250, "y": 250})
    page.wait_for_selector("#latent-map-info li", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "latent-tab-samples-walk-map.png"), full_page=True)


def test_image_tab_generates_previews_interrupts_and_reuses(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Image").click()
    page.wait_for_selector("#image-last-seed textarea", timeout=30_000)
    assert page.input_value("#image-last-seed textarea") == "", "no seed before the first run"
    # The one-step GAN greys out the diffusion settings; back to diffusion, they work again.
    steps = page.locator("#image-steps input[type=number]")
    page.get_by_label("GAN (one step)").check()
    page.wait_for_function("() => document.querySelector('#image-steps input[type=number]').disabled")
    page.get_by_label("Latent diffusion").check()
    page.wait_for_function("() => !document.querySelector('#image-steps input[type=number]').disabled")
    assert steps.is_enabled()
    page.fill("#image-prompt textarea", "red heart, in Twemoji style")
    page.fill("#image-seed input", "7")
    batch = page.locator("#image-batch-size input[type=number]")  # two images, seeds 7 and 8
    batch.fill("2")
    batch.press("Enter")
    page.click("#image-generate")
    page.wait_for_selector("#image-gallery .thumbnail-item img, #image-gallery img", timeout=120_000)
    page.wait_for_selector("#image-info:has-text('seed')", timeout=60_000)
    assert page.input_value("#image-last-seed textarea") == "7"
    page.screenshot(path=str(artifacts_dir / "image-tab-generated.png"), full_page=True)
    tab_screenshot(page, "image")
    # The batch's first image is shown whole and selected (so Reuse takes it), as PNG, not Gradio's lossy webp.
    shown = page.locator("#image-gallery [data-testid='detailed-image']")
    assert shown.get_attribute("src").split("?")[0].endswith(".png"), shown.get_attribute("src")
    assert "heart" in page.inner_text("#image-gallery")  # the caption under the large image
    page.fill("#image-seed input", "-1")
    page.click("#image-reuse")  # no click on the gallery needed: the shown image is the chosen one
    page.wait_for_function("() => document.querySelector('#image-seed input').value === '7'", timeout=30_000)

    # A long run: previews appear while it denoises, Interrupt stops it and keeps the image.
    page.fill("#image-seed input", "9")  # another seed, so that reusing an older image below means something
    batch.fill("1")
    batch.press("Enter")
    page.locator("#image-steps input[type=number]").fill("100")
    page.locator("#image-steps input[type=number]").press("Enter")
    page.click("#image-generate")
    page.wait_for_selector("#image-progress:has-text('step')", timeout=60_000)
    page.wait_for_selector("#image-previews img", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "image-tab-previews.png"), full_page=True)
    page.click("#image-interrupt")
    page.wait_for_selector("#image-info:has-text('Interrupted')", timeout=30_000)
    assert page.locator("#image-previews img").count() >= 1, "the finished image stays in the preview"
    assert page.locator("#image-gallery .thumbnail-item").count() >= 3

    # Reuse: click the oldest image in the strip (seed 8, the batch's second), reuse its parameters.
    page.fill("#image-seed input", "-1")
    page.locator("#image-gallery .thumbnail-small").last.click()  # the preview strip under the large image
    page.click("#image-reuse")
    page.wait_for_function("() => document.querySelector('#image-seed input').value === '8'", timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "image-tab-reuse.png"), full_page=True)
    page.click("#image-copies")
    page.wait_for_selector("#image-copies-info:has-text('nearest training pictures')", timeout=30_000)
    page.wait_for_selector("#image-copies-pictures img", timeout=30_000)


def test_image_tab_live_mode_redraws_as_one_types(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-live input[type=checkbox]").check()
    page.fill("#image-seed input", "3")
    page.locator("#image-prompt textarea").press_sequentially("red heart", delay=60)
    page.wait_for_selector("#image-progress:has-text('Live')", timeout=60_000)
    page.wait_for_selector("#image-live-picture img", timeout=30_000)
    first = page.locator("#image-live-picture img").first.get_attribute("src")
    page.locator("#image-prompt textarea").press_sequentially(" and a blue star", delay=60)
    page.wait_for_function(
        "src => { const img = document.querySelector('#image-live-picture img'); return img && img.src !== src; }",
        arg=first,
        timeout=30_000,
    )
    assert f"few-step student, {ImageConfig().live_steps} steps" in page.inner_text("#image-progress")
    assert page.locator("#image-gallery .thumbnail-item").count() == 0, "live pictures are not kept"
    page.screenshot(path=str(artifacts_dir / "image-tab-live.png"), full_page=True)
    page.locator("#image-live input[type=checkbox]").uncheck()
    page.wait_for_selector("#image-live-picture", state="hidden", timeout=30_000)


def test_image_tab_live_mode_follows_a_pasted_prompt(browser, app_url):
    """A prompt pasted whole (one input event, no keystrokes: what ``fill`` sends) starts a Live picture too."""
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Image").click()
    page.locator("#image-live input[type=checkbox]").check()
    page.locator("#image-prompt textarea").fill("red heart")
    page.wait_for_selector("#image-live-picture img", timeout=30_000)
    page.wait_for_selector("#image-progress:has-text('Live')", timeout=30_000)
    page.locator("#image-live input[type=checkbox]").uncheck()


def test_image_tab_gan_draws_in_one_step(browser, app_url, artifacts_dir):
    """The GAN generator: a picture per seed from one forward pass, shown and described like the others."""
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Image").click()
    page.get_by_label("GAN (one step)").check()
    page.fill("#image-prompt textarea", "grinning face, in Twemoji style")
    page.fill("#image-seed input", "5")
    page.click("#image-generate")
    page.wait_for_selector("#image-gallery [data-testid='detailed-image']", timeout=60_000)
    page.wait_for_selector("#image-info:has-text('GAN, one step')", timeout=30_000)
    assert page.input_value("#image-last-seed textarea") == "5"
    page.screenshot(path=str(artifacts_dir / "image-tab-gan.png"), full_page=True)


def test_story_tab_plans_draws_and_films(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Story").click()
    page.fill("#story-idea textarea", "a snowman who wants to see the summer")
    page.click("#story-plan")
    # The storyboard fills in: a row per scene, each cell editable.
    page.wait_for_function(  # the plan, or the error that stands in its place
        "() => /Plan ready/.test(document.querySelector('#story-progress').innerText)"
        " || document.querySelector('.toast-body')",
        timeout=180_000,
    )
    toasts = page.locator(".toast-body")
    assert not toasts.count(), f"planning failed: {toasts.first.inner_text()}"
    rows = page.inner_text("#story-table")
    assert "Narration" in rows and rows.count("\n-1") >= 4, rows  # a row per scene, on the story's seed
    assert page.input_value("#story-title textarea")
    assert "→" in page.inner_text("#story-suggestions")  # grounding suggestions with similarities
    page.click("#story-render")
    page.wait_for_selector("#story-video video", timeout=240_000)
    page.wait_for_selector("#story-info:has-text('narration')", timeout=60_000)
    assert page.locator("#story-panels img").count() == 4
    assert page.locator("#story-files a, #story-files .file-name").count() >= 5
    page.screenshot(path=str(artifacts_dir / "story-tab-film.png"), full_page=True)
    page.locator("#story-panels").screenshot(path=str(artifacts_dir / "story-panels.png"))
    page.locator("#story-video").screenshot(path=str(artifacts_dir / "story-video.png"))
    tab_screenshot(page, "story")
    # Re-roll scene 2: it gets a seed of its own in the table and the film is made again.
    first_info = page.inner_text("#story-info")
    page.locator("#story-reroll").click()
    page.wait_for_function(
        "(before) => { const el = document.querySelector('#story-info'); return el && el.innerText !== before; }",
        arg=first_info,
        timeout=240_000,
    )
    assert page.inner_text("#story-table").count("\n-1") == 3, "scene 1 keeps the story seed no more"


def test_verify_tab_reads_a_generated_pictures_credentials(browser, app_url, artifacts_dir, tab_screenshot):
    from gradio_client import Client

    files, _ = Client(app_url, verbose=False).predict(
        "cat face, in OpenMoji style", seed=4, num_inference_steps=4, api_name="/image_generate"
    )
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Verify").click()
    page.locator("#verify-file input[type=file]").set_input_files(
        files[0]["path"] if isinstance(files[0], dict) else files[0]
    )
    page.wait_for_selector("#verify-verdict:has-text('Content Credentials valid')", timeout=60_000)
    assert "demo certificate" in page.inner_text("#verify-verdict")
    assert "nearest training pictures" in page.inner_text("#verify-verdict")
    page.wait_for_selector("#verify-copies-pictures img", timeout=30_000)
    assert "cat face" in page.inner_text("#verify-parameters")
    page.screenshot(path=str(artifacts_dir / "verify-tab.png"), full_page=True)
    tab_screenshot(page, "verify")
    page.click("#verify-lab")
    page.wait_for_selector("#verify-lab-table:has-text('screenshot')", timeout=60_000)
    page.fill(
        "#verify-text textarea", "The printing press spread across Europe within fifty years of 1440. " * 3
    )
    page.click("#verify-check-text")
    page.wait_for_selector("#verify-text-verdict:has-text('no watermark found')", timeout=30_000)
    page.get_by_text("About: the models and their data").click()
    page.locator("#about-card-name input").fill("emoji-lcm")
    page.keyboard.press("Enter")
    page.wait_for_selector("#about-card:has-text('4-step student')", timeout=30_000)
    page.screenshot(path=str(artifacts_dir / "verify-about.png"), full_page=True)


def test_evaluate_tab_sweeps_and_measures(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Evaluate").click()
    page.fill("#evaluate-x-values textarea, #evaluate-x-values input", "1, 4, 7")
    page.fill("#evaluate-y-values textarea, #evaluate-y-values input", "4, 12")
    page.click("#evaluate-run")
    page.wait_for_selector("#evaluate-progress:has-text('cell')", timeout=60_000)
    page.wait_for_selector("#evaluate-figures:has-text('precision')", timeout=180_000)
    assert "6 cells" in page.inner_text("#evaluate-progress")
    assert "6 pictures on the corpus map" in page.inner_text("#evaluate-progress")
    page.wait_for_selector("#evaluate-map img", timeout=30_000)
    tab_screenshot(page, "evaluate")
    page.screenshot(path=str(artifacts_dir / "evaluate-tab.png"), full_page=True)
    page.wait_for_selector("#evaluate-files:has-text('sweep-map')", timeout=30_000)
    page.locator("#evaluate-map").screenshot(path=str(artifacts_dir / "evaluate-map.png"))


def test_evaluate_tab_compares_two_text_settings(browser, app_url, artifacts_dir):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Evaluate").click()
    page.get_by_text("Compare two text settings").click()
    page.fill("#evaluate-text-tokens input[type=number]", "32")
    page.keyboard.press("Enter")
    page.click("#evaluate-text-run")
    page.wait_for_selector("#evaluate-text-table:has-text('perplexity')", timeout=300_000)
    assert "8 replies" in page.inner_text("#evaluate-text-progress")
    page.screenshot(path=str(artifacts_dir / "evaluate-text.png"), full_page=True)


def test_tune_tab_trains_and_compares(browser, app_url, artifacts_dir, tab_screenshot):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Tune").click()
    page.click("#tune-example-format")
    page.wait_for_function(
        "() => document.querySelector('#tune-text textarea').value.includes('messages')", timeout=10_000
    )
    page.fill("#tune-name input, #tune-name textarea", "pirate-browser")
    page.click("#tune-train")
    page.wait_for_selector("#tune-progress:has-text('step')", timeout=300_000)
    page.wait_for_selector("#tune-result:has-text('Held-out perplexity')", timeout=600_000)
    assert "pirate-browser" in page.inner_text("#tune-result")
    page.wait_for_selector("#tune-files:has-text('pirate-browser')", timeout=30_000)
    page.fill("#tune-compare-prompt input, #tune-compare-prompt textarea", "How do I learn to cook?")
    page.click("#tune-compare")
    page.wait_for_selector("#tune-meter:has-text('Seed')", timeout=120_000)
    assert page.input_value("#tune-tuned-reply textarea").strip()
    tab_screenshot(page, "tune")
    page.screenshot(path=str(artifacts_dir / "tune-tab.png"), full_page=True)
    # The adapter is offered in the Text tab.
    page.get_by_role("tab", name="Text").click()
    page.click("#text-adapter-refresh")
    page.click("#text-adapter input")
    page.get_by_role("option", name="pirate-browser").wait_for(timeout=10_000)


def test_tune_pictures_teaches_a_word_and_the_image_tab_draws_it(
    browser, app_url, artifacts_dir, tab_screenshot
):
    page = open_page(browser, app_url)
    page.get_by_role("tab", name="Tune").click()
    page.get_by_role("tab", name="Pictures (diffusion model)").click()
    page.click("#tune-image-example")
    page.wait_for_function(
        "() => document.querySelectorAll('#tune-image-pictures img').length === 8", timeout=20_000
    )
    assert page.input_value("#tune-image-word input, #tune-image-word textarea") == "my-blip"
    # A picture drawn in the sketch pad joins the uploaded ones.
    page.click("#tune-image-draw button")
    page.click("#tune-image-sketch button[aria-label='Brush']")
    canvas = page.locator("#tune-image-sketch canvas").last
    canvas.wait_for(timeout=10_000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + box["height"] * 0.3)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(
            box["x"] + box["width"] * (0.3 + 0.04 * k), box["y"] + box["height"] * (0.3 + 0.03 * k)
        )
    page.mouse.up()
    page.click("#tune-image-add")
    page.wait_for_function(
        "() => document.querySelectorAll('#tune-image-pictures img').length === 9", timeout=20_000
    )
    page.fill("#tune-image-name input, #tune-image-name textarea", "blip-browser")
    page.click("#tune-image-settings button")
    for elem, value in (("#tune-image-steps", "30"), ("#tune-image-preview-every", "10")):
        box_ = page.locator(f"{elem} input[type=number]")
        box_.fill(value)
        box_.press("Enter")
    page.click("#tune-image-train")
    page.wait_for_selector("#tune-image-progress:has-text('step')", timeout=300_000)
    page.wait_for_selector("#tune-image-result:has-text('blip-browser')", timeout=300_000)
    assert page.locator("#tune-image-previews img").count() == 4
    page.click("#tune-image-compare")
    page.wait_for_selector("#tune-image-table:has-text('Seed')", timeout=120_000)
    assert page.locator("#tune-image-compared img").count() == 4
    tab_screenshot(page, "tune-pictures")
    page.screenshot(path=str(artifacts_dir / "tune-pictures-tab.png"), full_page=True)
    # The adapter is offered in the Image tab, and draws the word there.
    page.get_by_role("tab", name="Image", exact=True).click()
    page.click("#image-adapter-refresh")
    page.click("#image-adapter input")
    page.get_by_role("option", name="blip-browser").click()
    page.fill("#image-prompt textarea", "my-blip")
    page.click("#image-generate")
    page.wait_for_selector("#image-info:has-text('adapter blip-browser')", timeout=60_000)
    page.screenshot(path=str(artifacts_dir / "image-tab-adapter.png"), full_page=True)


def test_a_full_queue_tells_the_page_it_is_busy_in_the_products_words(browser, artifacts_dir):
    """Gradio's page shows its own fixed English sentence for a full queue; the guard gets ours shown."""
    import socket
    import threading
    import time

    import gradio as gr
    from gradio_client import Client
    from gradio_client.utils import QueueError, Status
    from starlette.middleware import Middleware

    from aigc_demo.ui.guard import BUSY, RequestGuard

    release = threading.Event()

    def slow(text: str) -> str:
        release.wait(60)
        return text

    with gr.Blocks() as demo:
        box = gr.Textbox(elem_id="in")
        out = gr.Textbox()
        gr.Button("Go", elem_id="go").click(slow, box, out, api_name="slow", concurrency_limit=1)
    demo.queue(max_size=1)  # one running, one waiting: the next is refused
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    demo.launch(
        server_port=port, prevent_thread_lock=True, app_kwargs={"middleware": [Middleware(RequestGuard)]}
    )
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        jobs = []
        for text, status in (("a", Status.PROCESSING), ("b", Status.IN_QUEUE)):  # one running, one waiting
            jobs.append(client.submit(text, api_name="/slow"))
            deadline = time.time() + 30
            while jobs[-1].status().code != status and time.time() < deadline:
                time.sleep(0.1)
            assert jobs[-1].status().code == status, jobs[-1].status()
        page = browser.new_page(viewport={"width": 900, "height": 500})
        page.goto(url)
        page.click("#go")
        page.get_by_text("AIGC Studio is busy").first.wait_for(timeout=15_000)  # an error toast
        page.wait_for_timeout(600)  # its fade-in
        page.screenshot(path=str(artifacts_dir / "queue-full.png"))
        assert "正忙" in page.content() and "currently busy" not in page.content()
        with pytest.raises(QueueError):  # gradio_client still gets its 503
            client.submit("c", api_name="/slow").result(timeout=30)
        release.set()
        assert [job.result(timeout=30) for job in jobs] == ["a", "b"]  # both still served
        assert BUSY.startswith("AIGC Studio is busy")
    finally:
        release.set()
        demo.close()
