"""Speech engines: eSpeak NG for real (CI installs it), a tiny random VITS model, and the Speech container."""

from __future__ import annotations

import json
import logging
import math
import wave
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from aigc_demo import speech
from aigc_demo.speech import EspeakEngine, Speech, TransformersSpeech, build_speech

ENGLISH = "The little fish looked up at the birds every day and dreamed of the sky."  # 15 words
MANDARIN = "一条小鱼每天都抬头看天上的鸟。"


@pytest.fixture(scope="module")
def espeak():
    return EspeakEngine()


def rms(s: Speech) -> float:
    return float(np.sqrt(np.mean(s.samples**2)))


def test_espeak_speaks_english(espeak):
    said = espeak.speak(ENGLISH)
    assert said.samples.dtype == np.float32 and said.samples.ndim == 1
    assert said.sample_rate == 22050
    assert np.abs(said.samples).max() <= 1.0 and rms(said) > 0.01
    assert 2.0 < said.seconds < 10.0  # 15 words at espeak's 175 words per minute: about 5 s


def test_espeak_speaks_mandarin_by_default_for_chinese_text(espeak):
    assert espeak.default_voice(MANDARIN) == "cmn"
    assert espeak.default_voice(ENGLISH) == "en-us"
    said = espeak.speak(MANDARIN)
    assert rms(said) > 0.01 and 1.5 < said.seconds < 12.0


def test_espeak_lists_english_and_mandarin_voices(espeak):
    voices = espeak.voices()
    assert {"en", "en-us", "en-gb", "cmn"} <= set(voices)
    assert voices == sorted(set(voices))


def test_espeak_longer_text_and_rate(espeak):
    short = espeak.speak("The fish swam.", voice="en-gb")
    long = espeak.speak(ENGLISH, voice="en-gb")
    fast = espeak.speak(ENGLISH, voice="en-gb", rate=2.0)
    assert short.seconds < long.seconds
    assert fast.seconds < 0.7 * long.seconds


def test_espeak_reads_text_as_text_not_options(espeak):
    said = espeak.speak("-v xx --stdout; rm -rf /")  # one argument after "--": spoken, never a flag or shell
    assert rms(said) > 0.01


def test_espeak_is_safe_from_many_threads(espeak):
    texts = ["One.", ENGLISH, "Two birds.", MANDARIN] * 2
    alone = [espeak.speak(t).seconds for t in texts]
    with ThreadPoolExecutor(2) as pool:
        together = [s.seconds for s in pool.map(espeak.speak, texts)]
    assert together == alone


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"text": ""}, "text is empty"),
        ({"text": " \n\t"}, "text is empty"),
        ({"text": None}, "text is empty"),
        ({"text": 42}, "text must be text"),
        ({"text": "x" * (speech.MAX_SPEECH_CHARS + 1)}, "the limit is"),
        ({"text": "hi", "voice": "xx"}, "voice 'xx' does not exist; available: "),
        ({"text": "hi", "rate": 3}, "rate must be between 0.5 and 2.0"),
        ({"text": "hi", "rate": 0.1}, "rate must be between 0.5 and 2.0"),
        ({"text": "hi", "rate": "fast"}, "rate must be a number"),
    ],
)
def test_bad_input_names_the_problem(espeak, kwargs, message):
    with pytest.raises(ValueError, match=message):
        espeak.speak(**kwargs)


def test_unknown_voice_message_is_short_and_suggests_the_closest(espeak):
    with pytest.raises(ValueError) as caught:
        espeak.speak("hi", voice="en-usa")
    text = str(caught.value)
    assert "available: en-us, " in text and "more" in text and len(text) < 200


def test_auto_voice_follows_the_text(espeak):
    assert espeak.speak(MANDARIN, voice="auto").seconds == espeak.speak(MANDARIN, voice="cmn").seconds


def fake_espeak(tmp_path, body: str) -> str:
    """A stand-in binary that lists one voice and then runs ``body`` to "speak"."""
    script = tmp_path / "espeak-ng"
    script.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "--voices" ]; then\n'
        "  echo 'Pty Language Age/Gender VoiceName File Other Languages'\n"
        "  echo ' 2  en-us  --/M  English_(America)  gmw/en-US  (en 3)'\n"
        "  exit 0\n"
        "fi\n" + body + "\n"
    )
    script.chmod(0o755)
    return str(script)


def test_engine_failure_is_a_runtime_error_with_its_stderr(tmp_path):
    engine = EspeakEngine(binary=fake_espeak(tmp_path, "echo 'Error: no sound today' >&2; exit 3"))
    assert engine.voices() == ["en", "en-us"]
    with pytest.raises(RuntimeError, match=r"exit 3\): Error: no sound today"):
        engine.speak("hello")


def test_engine_timeout_is_a_runtime_error(tmp_path):
    engine = EspeakEngine(binary=fake_espeak(tmp_path, "exec sleep 5"), timeout=0.3)
    with pytest.raises(RuntimeError, match="longer than 0.3 s"):
        engine.speak("hello")


def test_write_wav_round_trips(tmp_path):
    samples = np.sin(np.linspace(0, 200 * np.pi, 8000)).astype(np.float32) * 0.5
    path = Speech(samples, 16000).write_wav(tmp_path / "tone.wav")
    with wave.open(str(path)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 16000)
        back = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2") / 32767
    np.testing.assert_allclose(back, samples, atol=1 / 32767)


def test_speech_is_clipped_mono_float32():
    said = Speech(np.array([2.0, -3.0, np.nan, 0.25]), 8000)
    assert said.samples.dtype == np.float32
    assert said.samples.tolist() == [1.0, -1.0, 0.0, 0.25]
    assert said.seconds == 4 / 8000
    with pytest.raises(ValueError, match="one mono channel"):
        Speech(np.zeros((2, 10)), 8000)


@pytest.fixture(scope="module")
def tiny_vits_dir(tmp_path_factory):
    """A randomly initialised VITS model and a character tokenizer, saved like a hub model."""
    import torch
    from transformers import VitsConfig, VitsModel, VitsTokenizer

    folder = tmp_path_factory.mktemp("tiny-vits")
    vocab = {
        "<pad>": 0,
        " ": 1,
        **{c: i + 2 for i, c in enumerate("abcdefghijklmnopqrstuvwxyz")},
        "<unk>": 28,
    }
    (folder / "vocab.json").write_text(json.dumps(vocab))
    VitsTokenizer(vocab_file=str(folder / "vocab.json"), phonemize=False).save_pretrained(folder)
    # One of every stack, 16 channels wide: the smallest VITS that runs end to end.
    stacks = ["num_hidden_layers", "prior_encoder_num_flows", "duration_predictor_num_flows"]
    stacks += ["prior_encoder_num_wavenet_layers", "posterior_encoder_num_wavenet_layers"]
    widths = ["hidden_size", "ffn_dim", "upsample_initial_channel", "duration_predictor_filter_channels"]
    config = VitsConfig(
        **dict.fromkeys(stacks + ["depth_separable_num_layers"], 1),
        **dict.fromkeys(widths, 16),
        vocab_size=len(vocab),
        pad_token_id=0,
        num_attention_heads=2,
        flow_size=8,
        spectrogram_bins=9,  # the posterior encoder's input, used only in training
        upsample_rates=[4, 4],  # 16 samples a frame
        upsample_kernel_sizes=[8, 8],
        resblock_kernel_sizes=[3],
        resblock_dilation_sizes=[[1, 3]],
        use_stochastic_duration_prediction=False,
        sampling_rate=12000,
    )
    torch.manual_seed(0)
    model = VitsModel(config)
    # Every character lasts exactly 4 frames (log 4 from the duration head), so the rate's effect is exact.
    with torch.no_grad():
        model.duration_predictor.proj.weight.zero_()
        model.duration_predictor.proj.bias.fill_(math.log(4.0))
    model.save_pretrained(folder)
    return folder


def test_transformers_speech_speaks_at_the_models_rate(tiny_vits_dir):
    engine = build_speech(str(tiny_vits_dir))
    assert isinstance(engine, TransformersSpeech)
    assert engine.name == str(tiny_vits_dir)
    assert engine.voices() == ["default"] and engine.default_voice(MANDARIN) == "default"
    said = engine.speak("Hello, little fish!")
    assert said.sample_rate == 12000
    assert said.samples.dtype == np.float32 and said.samples.ndim == 1 and len(said.samples) > 0
    assert np.isfinite(said.samples).all() and np.abs(said.samples).max() <= 1.0
    # "hello little fish" (no punctuation): 17 characters + 18 blanks, 4 frames each, 16 samples a frame
    assert said.seconds == 35 * 4 * 16 / 12000
    assert engine.speak("Hello, little fish!", rate=2.0).seconds == said.seconds / 2


def test_transformers_speech_refuses_what_it_cannot_say(tiny_vits_dir):
    engine = TransformersSpeech(str(tiny_vits_dir))
    with pytest.raises(ValueError, match="no characters"):
        engine.speak(MANDARIN)  # an English vocabulary has none of these characters
    with pytest.raises(ValueError, match="voice 'cmn' does not exist; available: default"):
        engine.speak("hello", voice="cmn")


def test_build_speech():
    assert build_speech("none") is None
    assert build_speech("") is None
    assert isinstance(build_speech("espeak-ng"), EspeakEngine)


def test_build_speech_without_espeak_is_none_with_a_warning(monkeypatch, caplog):
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with caplog.at_level(logging.WARNING, logger="aigc_demo.speech"):
        assert build_speech("espeak-ng") is None
    assert "espeak-ng is not installed" in caplog.text
