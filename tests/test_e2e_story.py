"""End to end on the Story tab's API: the default models plan, draw, narrate and film an idea."""

from __future__ import annotations

import re
import subprocess

import imageio_ffmpeg
import pytest
from gradio_client import Client


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_an_idea_becomes_a_narrated_film_through_the_api(client):
    plan = client.predict("a cat who is afraid of rain finds an umbrella", api_name="/story_plan")
    assert len(plan["scenes"]) == 4 and plan["title"]
    assert all(s["narration"] and s["picture"] for s in plan["scenes"])
    assert all(options and options[0]["similarity"] > 0 for options in plan["suggestions"])
    mp4, others, info = client.predict(plan, seed=3, api_name="/story_render")
    assert not info["stopped"] and info["seed"] == 3
    assert info["seconds"] >= 6 and info["audio_seconds"] == pytest.approx(info["seconds"], abs=0.2)
    assert {p.rsplit(".", 1)[-1] for p in [o["path"] if isinstance(o, dict) else o for o in others]} == {
        "gif", "zip", "png", "json"
    }  # fmt: skip
    path = mp4["video"] if isinstance(mp4, dict) and "video" in mp4 else mp4
    path = path["path"] if isinstance(path, dict) else path
    probe = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-i", path], capture_output=True, text=True
    ).stderr
    assert re.search(r"Video: h264.*yuv420p", probe) and re.search(r"Audio: aac", probe)


@pytest.mark.parametrize(
    ("endpoint", "args", "message"),
    [
        ("/story_plan", ("",), "idea"),
        ("/story_plan", ("x" * 10_000,), "idea"),
        ("/story_render", ({"title": "t", "scenes": []},), "3 to 8 scenes"),
        ("/story_render", ("{broken",), "not valid JSON"),
    ],
)
def test_bad_requests_get_a_message_and_the_app_carries_on(client, endpoint, args, message):
    with pytest.raises(Exception, match=message):
        client.predict(*args, api_name=endpoint)
    kwargs = {"scenes": 0} if endpoint == "/story_plan" else {}
    if kwargs:
        with pytest.raises(Exception, match="scenes"):
            client.predict("a dog", **kwargs, api_name="/story_plan")
