"""Where a generated file comes from, said in the file: its parameters as PNG text (``parameters``) and a
signed C2PA manifest (``content_credentials``), read back by the Verify tab."""

from aigc_demo.provenance.content_credentials import ContentCredentials, Verdict, content_credentials
from aigc_demo.provenance.parameters import read_parameters, save_png

__all__ = ["ContentCredentials", "Verdict", "content_credentials", "read_parameters", "save_png"]
