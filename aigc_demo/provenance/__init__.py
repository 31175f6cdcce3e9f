"""Where a generated output comes from, said in the output: its parameters as PNG text (``parameters``), a
signed C2PA manifest (``content_credentials``) and, for text, a statistical watermark (``text_watermark``); the
model and data cards (``cards``). Read back by the Verify tab."""
