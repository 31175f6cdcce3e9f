"""End to end on Tune: a text fine-tune, the side-by-side comparison and the tuned model in /chat; a word
taught to the image model from pictures, compared and drawn in /image_generate; through gradio_client on the
real default models."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from aigc_demo.data.tune_examples import MASCOT_WORD, format_example, mascot_pictures, style_example


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.fixture(scope="module")
def tuned(client):
    job = client.submit(format_example(), None, "pirate", "format", api_name="/tune_text")
    return list(job)


def test_checking_data_states_tokens_and_time(client):
    text = style_example() or format_example()
    preset = "style" if style_example() else "format"
    info = client.predict(text, None, preset, api_name="/tune_text_check")
    assert info["train_tokens"] > 500 and info["held_out_tokens"] > 0 and info["eta_s"] > 0


def test_bad_training_data_gets_a_clear_message(client, tmp_path):
    with pytest.raises(Exception, match="there is no training text"):
        client.predict("", api_name="/tune_text_check")
    binary = tmp_path / "song.txt"
    binary.write_bytes(b"ID3\x04\x00\x00\x00" + bytes(range(256)) * 4)
    with pytest.raises(Exception, match="song.txt is not text"):
        client.predict("", handle_file(str(binary)), api_name="/tune_text_check")
    broken = "\n".join([*format_example().splitlines()[:5], "{oops", '{"messages": []}'])
    with pytest.raises(Exception, match="line 6: not JSON.*line 7: needs"):
        client.predict(broken, None, "format", api_name="/tune_text_check")


def test_a_fine_tune_streams_progress_and_saves_an_adapter(tuned):
    steps = [e for e in tuned if "step" in e]
    assert steps[0]["step"] == 0 and steps[0]["held_out_loss"] > 0 and steps[-1]["step"] >= 1
    result = tuned[-1]
    assert result["adapter"] == "pirate" and result["perplexity_after"] < result["perplexity_before"]


def test_base_and_tuned_side_by_side_and_in_chat(client, tuned):
    compared = client.predict("pirate", "What is the largest desert?", 4, api_name="/tune_compare")
    assert compared["seed"] == 4 and compared["base"]["text"] != compared["tuned"]["text"]
    assert compared["tuned"]["copied"] is not None  # the meter knows the text this adapter learned
    reply = client.predict("Hello! Who are you?", api_name="/chat", adapter="pirate")
    assert reply["model"].endswith("+ pirate") and reply["text"]
    assert [a["name"] for a in client.predict(api_name="/tune_adapters")][0] == "pirate"
    with pytest.raises(Exception, match="no adapter named 'ghost'"):
        client.predict("Hi", api_name="/chat", adapter="ghost")
    with pytest.raises(Exception, match="an adapter named 'pirate' exists"):
        client.predict(format_example(), None, "pirate", "format", api_name="/tune_text")


@pytest.fixture(scope="module")
def taught(client):
    """A short picture fine-tune of the real emoji model on the Blip example."""
    pictures = [handle_file(p) for p in mascot_pictures()]
    job = client.submit(MASCOT_WORD, pictures, "blip", steps=30, preview_every=0, api_name="/tune_image")
    return list(job)


def test_teaching_a_word_streams_progress_and_saves_an_adapter(client, taught):
    steps = [e for e in taught if "step" in e]
    assert steps[0]["step"] == 0 and steps[-1]["step"] == 30 and steps[0]["fit_loss"] > 0
    result = taught[-1]
    assert result["adapter"] == "blip" and result["word"] == MASCOT_WORD
    assert result["fit_loss_after"] < result["fit_loss_before"]
    assert client.predict(api_name="/tune_image_adapters")[0]["name"] == "blip"


def test_the_taught_word_in_compare_and_in_the_image_tab(client, taught):
    compared = client.predict("blip", None, 3, api_name="/tune_image_compare")
    assert compared["prompts"] == [MASCOT_WORD, f"{MASCOT_WORD} wearing a hat"] and compared["seed"] == 3
    base, tuned = compared["base"][0], compared["tuned"][0]
    assert tuned["likeness"]["similarity"] > base["likeness"]["similarity"], "tuned draws the pictures' thing"
    files, info = client.predict(MASCOT_WORD, seed=3, adapter="blip", api_name="/image_generate")
    assert info["parameters"][0]["adapter"] == "blip" and files
    with pytest.raises(Exception, match="no adapter named 'ghost'"):
        client.predict(MASCOT_WORD, adapter="ghost", api_name="/image_generate")


def test_bad_pictures_and_words_get_a_clear_message(client, tmp_path):
    pictures = [handle_file(p) for p in mascot_pictures()]
    with pytest.raises(Exception, match="already knows"):
        client.predict("mascot", pictures, api_name="/tune_image")
    with pytest.raises(Exception, match="give 4-16 pictures"):
        client.predict(MASCOT_WORD, pictures[:2], api_name="/tune_image")
    broken = tmp_path / "photo.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(Exception, match=r"picture 5 \(photo.png\)"):
        client.predict(MASCOT_WORD, [*pictures[:4], handle_file(str(broken))], api_name="/tune_image")
