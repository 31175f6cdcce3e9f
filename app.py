"""AIGC Studio: read config, build the resident pipelines, build the Blocks, launch.

`demo` is module-level so `gradio app.py` (reload mode) and Hugging Face Spaces find it.
"""

import logging

from starlette.middleware import Middleware

from aigc_demo.config import AppConfig
from aigc_demo.registry import build_registry
from aigc_demo.ui.guard import RequestGuard
from aigc_demo.ui.layout import CSS, build_demo
from aigc_demo.ui.strings import I18N

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

config = AppConfig.from_env()
registry = build_registry(config)
demo = build_demo(registry, config)

if __name__ == "__main__":
    demo.launch(
        server_name=config.server.host,  # None: Gradio reads GRADIO_SERVER_NAME (a Space: 0.0.0.0)
        server_port=config.server.port,
        i18n=I18N,
        css=CSS,
        show_error=True,
        app_kwargs={"middleware": [Middleware(RequestGuard)]},
    )
