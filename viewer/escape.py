"""The one escaping helper for text that did not come from our own code.

Scene keys (from chunk files), file names, capture folders, error messages that quote them, and
whatever a client types into the GUI may contain markup. Before such text reaches viser's
markdown (which renders raw HTML, and whose status panel every client shares), an HTML page or
rich console markup, it goes through one of these functions. Text our own code writes (labels,
numbers) needs none.
"""

from __future__ import annotations

import html

# Characters that mean something to markdown or HTML. Each becomes a numeric character reference
# (``&#42;`` for ``*``): markdown decodes those into plain text and never reads them as markup,
# so a key like ``*room*`` or ``<img onerror=...>`` shows exactly as written.
_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]()#+-.!|~<>&\"'=:/")


def escape_html(text: object) -> str:
    """``text`` for HTML element content or a quoted attribute value."""
    return html.escape(str(text), quote=True)


def escape_markdown(text: object) -> str:
    """``text`` for viser markdown, shown literally; newlines become spaces (no new blocks)."""
    flat = " ".join(str(text).splitlines())
    return "".join(f"&#{ord(c)};" if c in _MARKDOWN_SPECIAL else c for c in flat)


def escape_rich(text: object) -> str:
    """``text`` for rich console markup (``[bold]`` and the like are shown, not applied)."""
    from rich.markup import escape

    return escape(str(text))
