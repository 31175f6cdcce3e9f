"""The image check by config (AIGC_SAFETY_IMAGE_CLASSIFIER): a hub image classifier, here a tiny random ViT
saved as a hub folder, withholds the pictures it flags with a message naming the label; the rest are kept."""

from __future__ import annotations

import pytest

from aigc_demo import content_filter


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    import torch
    from transformers import ViTConfig, ViTForImageClassification, ViTImageProcessor

    torch.manual_seed(0)
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=2, id2label={0: "normal", 1: "nsfw"}, label2id={"normal": 0, "nsfw": 1},
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tiny-image-classifier")
    ViTForImageClassification(config).save_pretrained(folder, safe_serialization=True)
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture
def configure(monkeypatch):
    def set_to(**settings):
        for key, value in settings.items():
            monkeypatch.setenv(f"AIGC_SAFETY_{key.upper()}", str(value))
        content_filter.image_classifier.cache_clear()

    yield set_to
    monkeypatch.undo()
    content_filter.image_classifier.cache_clear()


REQUEST = {"prompt": "a cat", "seed": 3, "batch_size": 4, "num_inference_steps": 2}


def test_pictures_the_classifier_flags_are_withheld_and_named(tiny_pipe, classifier_dir, configure):
    drawn = tiny_pipe(REQUEST)
    pictures = [made.image for made in drawn.images]
    configure(image_classifier=classifier_dir)
    nsfw = content_filter.image_classifier().probabilities(pictures)["nsfw"]
    ranked = sorted(nsfw)
    assert ranked[1] < ranked[2], "the random classifier tells these four apart"
    configure(image_classifier=classifier_dir, image_threshold=(ranked[1] + ranked[2]) / 2)
    result = tiny_pipe(REQUEST)
    kept_seeds = [made.parameters["seed"] for made in result.images]
    assert kept_seeds == [3 + i for i, p in enumerate(nsfw) if p < (ranked[1] + ranked[2]) / 2]
    assert any(
        "2 of 4 pictures were withheld by the image check: it reads as nsfw" in w for w in result.warnings
    )
    for made, seed in zip(result.images, kept_seeds, strict=True):
        assert made.image.tobytes() == pictures[seed - 3].tobytes()

    configure(image_classifier=classifier_dir, image_threshold=0.0)
    with pytest.raises(ValueError, match="withheld by the image check: it reads as nsfw"):
        tiny_pipe(REQUEST)


def test_without_a_classifier_nothing_is_checked_and_a_bad_one_refuses(tiny_pipe, classifier_dir, configure):
    assert content_filter.check_images([None, None]) == [None, None]  # none configured: not even opened
    configure(image_classifier=classifier_dir, image_labels="violence")
    with pytest.raises(ValueError, match="has no label 'violence'"):
        tiny_pipe(REQUEST)
