"""Text to speech for the Story tab's narration: one interface, two kinds of engine.

``EspeakEngine`` is the embedded default: Debian's ``espeak-ng``, offline, about a hundred times faster than
real time on one core, with English and Mandarin among its voices; each call is its own subprocess, so calls
from many users never share state. ``TransformersSpeech`` runs a VITS model from a hub id or a folder (e.g.
``facebook/mms-tts-eng``) where one is available. Both return a ``Speech``: mono float samples and their rate.
"""

from __future__ import annotations

import difflib
import io
import logging
import re
import shutil
import subprocess
import time
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from aigc_demo import validation

logger = logging.getLogger(__name__)

MAX_SPEECH_CHARS = 1000  # per call: a scene's narration is one or two sentences
MIN_RATE, MAX_RATE = 0.5, 2.0  # speed factor: 88-350 words a minute on espeak-ng (its own range is 80-450)
ESPEAK = "espeak-ng"
ESPEAK_WPM = 175  # espeak-ng's own default speed, which rate 1.0 keeps
ESPEAK_TIMEOUT = 30.0  # seconds; MAX_SPEECH_CHARS takes well under one
# Han ideographs (CJK unified, extension A, compatibility): text to be read by a Mandarin voice.
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_AUTO_VOICES = ("", "auto")  # a cleared voice box or the UI's "auto": the text's language picks the voice
MAX_LISTED_VOICES = 12  # voices named in an "unknown voice" message


@dataclass(frozen=True, eq=False)
class Speech:
    """Mono audio: float32 samples in [-1, 1] at ``sample_rate`` Hz."""

    samples: np.ndarray
    sample_rate: int

    def __post_init__(self):
        samples = np.asarray(self.samples, dtype=np.float32)
        if samples.ndim != 1:
            raise ValueError(f"speech samples must be one mono channel, not shape {samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be above 0, not {self.sample_rate}")
        samples = np.clip(np.nan_to_num(samples, nan=0.0), -1.0, 1.0)
        object.__setattr__(self, "samples", np.ascontiguousarray(samples, dtype=np.float32))

    @property
    def seconds(self) -> float:
        return len(self.samples) / self.sample_rate

    def resampled(self, rate: int) -> Speech:
        """The same speech at ``rate`` Hz (linear interpolation: enough for a voice, not for music)."""
        n = len(self.samples)
        if rate == self.sample_rate or n == 0:
            return Speech(self.samples, rate)
        m = int(round(n * rate / self.sample_rate))
        return Speech(np.interp(np.linspace(0, n - 1, m), np.arange(n), self.samples), rate)

    def write_wav(self, path) -> Path:
        """Write a 16-bit PCM mono WAV file; returns its path."""
        path = Path(path)
        pcm = np.round(self.samples * 32767).astype("<i2")
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.sample_rate)
            out.writeframes(pcm.tobytes())
        return path


class SpeechEngine(Protocol):
    name: str  # "espeak-ng" or the model id

    def voices(self) -> list[str]:
        """The voice ids ``speak`` accepts."""
        ...

    def default_voice(self, text: str) -> str:
        """The voice for ``text`` when none is asked for: by its language."""
        ...

    def speak(self, text: str, voice: str | None = None, rate: float = 1.0) -> Speech:
        """``text`` spoken by ``voice`` (None: ``default_voice(text)``) at ``rate`` times normal speed."""
        ...


def check_request(text, voice, rate, engine: SpeechEngine) -> tuple[str, str, float]:
    """Clean (text, voice, rate) for ``engine`` or a ValueError naming what is wrong."""
    text = validation.text("text", text, MAX_SPEECH_CHARS, required=True)
    rate = validation.in_range("rate", validation.as_float("rate", rate), MIN_RATE, MAX_RATE)
    if voice is None or (isinstance(voice, str) and voice.strip().lower() in _AUTO_VOICES):
        return text, engine.default_voice(text), rate
    voices = engine.voices()
    if not isinstance(voice, str) or voice.strip() not in voices:
        # The closest ids first ("en-usa" -> "en-us"), then the rest in order, up to MAX_LISTED_VOICES.
        close = difflib.get_close_matches(str(voice), voices, n=MAX_LISTED_VOICES, cutoff=0.6)
        listed = (close + [v for v in voices if v not in close])[:MAX_LISTED_VOICES]
        more = f" and {len(voices) - len(listed)} more" if len(voices) > len(listed) else ""
        raise ValueError(
            f"voice {validation.quoted(voice)} does not exist; available: {', '.join(listed)}{more}"
        )
    return text, voice.strip(), rate


def has_han(text: str) -> bool:
    """Whether ``text`` has Chinese characters (it is then read by a Mandarin voice)."""
    return bool(_HAN.search(text or ""))


class EspeakEngine:
    """eSpeak NG as a subprocess: WAV on stdout, text as one argument (no shell), a timeout on each call."""

    name = ESPEAK
    # Preferred voices, first installed wins: espeak-ng >= 1.50 calls Mandarin "cmn", older releases "zh".
    MANDARIN = ("cmn", "zh")
    ENGLISH = ("en-us", "en")

    def __init__(self, binary: str = ESPEAK, timeout: float = ESPEAK_TIMEOUT):
        self.binary = binary
        self.timeout = timeout
        self._voices = self._list_voices()
        self._mandarin = next((v for v in self.MANDARIN if v in self._voices), None)
        self._english = next((v for v in self.ENGLISH if v in self._voices), None)
        if self._english is None:
            raise RuntimeError(f"{binary} has no English voice; its voices: {', '.join(self._voices)}")

    def _run(self, args: list[str]) -> bytes:
        try:
            done = subprocess.run(
                [self.binary, *args], capture_output=True, timeout=self.timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{self.name} took longer than {self.timeout:g} s and was stopped") from None
        if done.returncode != 0:
            raise RuntimeError(f"{self.name} failed (exit {done.returncode}): {_summary(done.stderr)}")
        return done.stdout

    def _list_voices(self) -> list[str]:
        """Language ids and their aliases from ``--voices``, e.g. "en-us", "en" (for en-gb), "cmn", "zh"."""
        ids = set()
        for line in self._run(["--voices"]).decode("utf-8", "replace").splitlines()[1:]:
            fields = line.split()
            if len(fields) >= 2:
                ids.add(fields[1])
            ids.update(re.findall(r"\(([\w-]+) \d+\)", line))
        return sorted(ids)

    def voices(self) -> list[str]:
        return list(self._voices)

    def default_voice(self, text: str) -> str:
        return self._mandarin if self._mandarin and has_han(text) else self._english

    def speak(self, text: str, voice: str | None = None, rate: float = 1.0) -> Speech:
        text, voice, rate = check_request(text, voice, rate, self)
        wpm = round(ESPEAK_WPM * rate)
        audio = self._run(["--stdout", "-v", voice, "-s", str(wpm), "--", text])
        return _read_wav(audio, self.name)


def _summary(stderr: bytes, limit: int = 300) -> str:
    """The last lines of a tool's stderr, cut to ``limit`` characters."""
    text = " ".join(stderr.decode("utf-8", "replace").split())
    if not text:
        return "no message"
    return text if len(text) <= limit else "…" + text[-limit:]


def _read_wav(data: bytes, source: str) -> Speech:
    """A ``Speech`` from 16-bit PCM WAV bytes.

    A WAV streamed to a pipe has no true length in its header (espeak-ng writes a huge placeholder), so the
    frames are read to the end of the data and cut to whole samples.
    """
    try:
        with wave.open(io.BytesIO(data)) as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise RuntimeError(f"{source} produced no readable WAV ({len(data)} bytes): {exc}") from None
    if width != 2:
        raise RuntimeError(f"{source} wrote {8 * width}-bit audio; 16-bit PCM is expected")
    usable = len(frames) - len(frames) % (2 * channels)
    samples = np.frombuffer(frames[:usable], dtype="<i2").reshape(-1, channels).mean(axis=1)
    if not len(samples):
        raise RuntimeError(f"{source} produced no audio")
    return Speech(samples / 32768.0, rate)


class TransformersSpeech:
    """A transformers VITS text-to-speech model (e.g. facebook/mms-tts-eng), from a hub id or a folder.

    One voice, "default": an MMS model speaks the one language it was trained on. Inference reads the model
    and never changes it (the rate is a forward argument), so concurrent calls need no lock.
    """

    VOICE = "default"

    def __init__(self, spec: str):
        from transformers import AutoTokenizer, VitsModel

        from aigc_demo.device import pick_device

        start = time.perf_counter()
        device = pick_device(prefer_half_on_cpu=False).device
        # fp32 whatever the device: the model is small and its flows are sensitive to half precision.
        self.model = VitsModel.from_pretrained(spec, use_safetensors=True).to(device).eval()
        self.tokenizer = AutoTokenizer.from_pretrained(spec)
        self.name = spec
        self.sample_rate = int(self.model.config.sampling_rate)
        logger.info("speech model %s loaded on %s in %.1f s", spec, device, time.perf_counter() - start)

    def voices(self) -> list[str]:
        return [self.VOICE]

    def default_voice(self, text: str) -> str:
        return self.VOICE

    def speak(self, text: str, voice: str | None = None, rate: float = 1.0) -> Speech:
        import torch

        text, voice, rate = check_request(text, voice, rate, self)
        # The tokenizer drops what its vocabulary lacks (Chinese for an English model): say so, not silence.
        prepare = getattr(self.tokenizer, "prepare_for_tokenization", None)
        if prepare is not None and not prepare(text)[0].strip():
            raise ValueError(f"text has no characters that {self.name} can say: {validation.quoted(text)}")
        inputs = self.tokenizer(text, return_tensors="pt").to(self.model.device)
        with torch.inference_mode():
            waveform = self.model(**inputs, speaking_rate=rate).waveform[0]
        return Speech(waveform.float().cpu().numpy(), self.sample_rate)


def build_speech(spec: str) -> SpeechEngine | None:
    """The engine ``spec`` names: "espeak-ng", "none" / "" (no narration) or a transformers model id/folder.

    A missing espeak-ng binary gives None and a warning (the films are then silent); a model that fails to
    load raises, as a misconfigured model should.
    """
    spec = (spec or "").strip()
    if spec.lower() in ("", "none"):
        return None
    if spec == ESPEAK:
        if shutil.which(ESPEAK) is None:
            logger.warning(
                "%s is not installed (apt-get install espeak-ng): Story films will be silent", ESPEAK
            )
            return None
        return EspeakEngine()
    return TransformersSpeech(spec)
