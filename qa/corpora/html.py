"""The main text of an HTML page: what a reader sees, without markup, scripts or page chrome.

The standard library's parser is enough: text inside ``script``, ``style``, ``nav``, ``header``,
``footer``, ``aside`` and similar elements is dropped, block elements become line breaks, and
when the page marks its content with ``<main>`` or ``<article>``, only that is kept. The title
is the ``<title>``, else the first ``<h1>``.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form", "button", "iframe", "head"})
_BLOCK = frozenset(
    {"p", "div", "br", "li", "ul", "ol", "tr", "table", "section", "article", "main", "h1", "h2", "h3", "h4", "h5", "h6",
     "blockquote", "pre", "dd", "dt", "figcaption", "hr", "td", "th"}
)
_VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "area", "base", "col", "embed", "source", "track", "wbr"})
_CONTENT = ("main", "article")


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.skip_depth = 0
        self.title: list[str] = []
        self.h1: list[str] = []
        self.parts: list[str] = []  # the whole body
        self.content: list[str] = []  # inside <main>/<article>
        self.content_depth = 0
        self.in_title = False
        self.in_h1 = False

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _VOID:
            if tag in _BLOCK:
                self._emit("\n")
            return
        self.stack.append(tag)
        if tag in _SKIP:
            self.skip_depth += 1
        if tag == "title":
            self.in_title = True
        if tag == "h1" and not self.h1:
            self.in_h1 = True
        if tag in _CONTENT:
            self.content_depth += 1
        if tag in _BLOCK:
            self._emit("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag not in self.stack:
            return  # a stray end tag
        while self.stack:  # close elements left open inside this one
            open_tag = self.stack.pop()
            if open_tag in _SKIP:
                self.skip_depth -= 1
            if open_tag in _CONTENT:
                self.content_depth -= 1
            if open_tag == "title":
                self.in_title = False
            if open_tag == "h1":
                self.in_h1 = False
            if open_tag in _BLOCK:
                self._emit("\n")
            if open_tag == tag:
                break

    def handle_data(self, data: str) -> None:
        if self.in_title:
            self.title.append(data)
            return
        if self.skip_depth:
            return
        if self.in_h1:
            self.h1.append(data)
        self._emit(data)

    def _emit(self, text: str) -> None:
        if self.skip_depth:
            return
        self.parts.append(text)
        if self.content_depth:
            self.content.append(text)


def html_text(content: str) -> tuple[str, str]:
    """``(title, text)`` of an HTML document; paragraphs in ``text`` are separated by blank lines."""
    parser = _TextParser()
    parser.feed(content)
    parser.close()
    body = parser.content if "".join(parser.content).strip() else parser.parts
    title = _squash(" ".join(parser.title)) or _squash(" ".join(parser.h1))
    return title, _paragraphs("".join(body))


def _squash(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    blocks = (_squash(block) for block in re.split(r"\n", text))
    return "\n\n".join(b for b in blocks if b)
