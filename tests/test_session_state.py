"""Gradio's per-session state makes each component's config when it is read, the same config as Gradio's."""

from __future__ import annotations

import gradio as gr
from gradio import state_holder

from aigc_demo.ui import session_state


def small_app() -> gr.Blocks:
    with gr.Blocks() as demo:
        box = gr.Textbox("hello", label="words")
        state = gr.State([1, 2])
        out = gr.Image(label="picture")
        box.submit(lambda x, s: None, [box, state], out)
    return demo


def test_a_new_session_makes_no_config_until_one_is_read(monkeypatch):
    demo = small_app()
    monkeypatch.setattr(state_holder.SessionState, "__init__", session_state._GRADIO_INIT)
    gradio_made = state_holder.SessionState(demo)  # Gradio's own
    session_state.lazy_session_configs()
    made: list[int] = []
    real = demo.default_config.config_for_block

    def counting(_id, *args, **kwargs):
        made.append(_id)
        return real(_id, *args, **kwargs)

    monkeypatch.setattr(type(demo.default_config), "config_for_block", staticmethod(counting))
    lazy = state_holder.SessionState(demo)
    assert made == [], "configs were made when the session was"
    assert list(lazy.components) == list(gradio_made.components)
    assert sorted(made) == sorted(gradio_made.config_values)
    assert lazy.state_data == gradio_made.state_data and lazy.is_closed is False


def test_reads_and_updates_behave_as_gradios(monkeypatch):
    demo = small_app()
    monkeypatch.setattr(state_holder.SessionState, "__init__", state_holder.SessionState.__init__)
    session_state.lazy_session_configs()
    session = state_holder.SessionState(demo)
    box_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.Textbox))
    state_id = next(k for k, b in demo.blocks.items() if isinstance(b, gr.State))
    assert box_id in session.config_values and session.config_values[box_id]["props"]["value"] == "hello"
    session._update_value_in_config(box_id, "changed")
    assert session.config_values[box_id]["props"]["value"] == "changed"
    session[state_id] = [3]
    assert session[state_id] == [3]
    assert 10**9 not in session.config_values
