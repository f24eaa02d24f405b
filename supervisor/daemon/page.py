"""The status page: one HTML file with its style and script inline (no build step, no
external asset), and the Content-Security-Policy that allows exactly those two blocks
by their hashes, the page's own fetches of /status.json, and nothing else."""

from __future__ import annotations

import base64
import hashlib
import re
from importlib import resources

__all__ = ["CSP", "PAGE", "csp_for"]


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def csp_for(page: str) -> str:
    """A policy allowing the page's inline <script> and <style> blocks and nothing else."""
    scripts = " ".join(_hash(s) for s in re.findall(r"<script>(.*?)</script>", page, re.S))
    styles = " ".join(_hash(s) for s in re.findall(r"<style>(.*?)</style>", page, re.S))
    return (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; "
        "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )


PAGE = resources.files("supervisor.daemon").joinpath("status_page.html").read_text("utf-8")
"""The page's HTML."""
CSP = csp_for(PAGE)
"""Its Content-Security-Policy header."""
