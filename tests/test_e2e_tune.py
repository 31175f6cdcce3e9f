"""End to end on Tune: a fine-tune, the side-by-side comparison and the tuned model in /chat, through
gradio_client on the real default model."""

from __future__ import annotations

import pytest
from gradio_client import Client, handle_file

from aigc_demo.data.tune_examples import format_example, style_example


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
