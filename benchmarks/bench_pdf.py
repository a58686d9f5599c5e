"""Choose the PDF text extractor: speed and text quality of pypdf, pypdfium2 and pdfminer.six.

Quality needs a known text, so the script typesets SQuAD dev articles into PDFs with reportlab
(justified paragraphs, headings, page breaks, one and two columns) and compares each extractor's
text with the source: word F1 (bag of words, as SQuAD scores answers) and order (difflib ratio
over the word sequences). Speed is pages per second over those PDFs and over any real PDFs given
with --pdf. PyMuPDF is not compared: its AGPL licence does not suit qa's Apache-2.0 licence.

    pip install pypdf pypdfium2 pdfminer.six reportlab
    python benchmarks/bench_pdf.py --articles 20 --pdf /usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf
"""

from __future__ import annotations

import argparse
import collections
import difflib
import json
import re
import tempfile
import time
from pathlib import Path

from data import DATA  # noqa: E402  ($QA_DATA_DIR, else ../shared/data)
_WORD = re.compile(r"\w+")


def typeset(articles: list[tuple[str, list[str]]], folder: Path) -> list[tuple[Path, str]]:
    from xml.sax.saxutils import escape

    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate, Paragraph

    styles = getSampleStyleSheet()
    out = []
    for n, (title, paragraphs) in enumerate(articles):
        path = folder / f"article-{n}.pdf"
        doc = BaseDocTemplate(str(path), pagesize=A4)
        columns = 1 + n % 2  # every other article in two columns
        width = (doc.width - 12 * (columns - 1)) / columns
        frames = [Frame(doc.leftMargin + i * (width + 12), doc.bottomMargin, width, doc.height) for i in range(columns)]
        doc.addPageTemplates([PageTemplate(frames=frames)])
        story = [Paragraph(escape(title), styles["Heading1"])]
        story += [Paragraph(escape(p), styles["BodyText"]) for p in paragraphs]
        doc.build(story)
        out.append((path, "\n".join([title, *paragraphs])))
    return out


def extract(library: str, path: Path) -> tuple[str, int]:
    if library == "pypdf":
        import pypdf

        reader = pypdf.PdfReader(path)
        return "\n".join(page.extract_text() or "" for page in reader.pages), len(reader.pages)
    if library == "pypdfium2":
        import pypdfium2

        pdf = pypdfium2.PdfDocument(path)
        try:
            return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf))), len(pdf)
        finally:
            pdf.close()
    if library == "pdfminer.six":
        from pdfminer.high_level import extract_text
        from pdfminer.pdfpage import PDFPage

        with open(path, "rb") as f:
            pages = sum(1 for _ in PDFPage.get_pages(f))
        return extract_text(path), pages
    raise ValueError(library)


def quality(extracted: str, truth: str) -> tuple[float, float]:
    got, want = _WORD.findall(extracted.lower()), _WORD.findall(truth.lower())
    common = sum((collections.Counter(got) & collections.Counter(want)).values())
    f1 = 0.0 if not common else 2 * common / (len(got) + len(want))
    order = difflib.SequenceMatcher(None, got, want, autojunk=False).ratio()
    return f1, order


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--squad", default=str(DATA / "squad" / "dev-v1.1.json"))
    parser.add_argument("--articles", type=int, default=20)
    parser.add_argument("--pdf", action="append", default=[], help="a real PDF to time (repeatable)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pdf_extractors.json"))
    args = parser.parse_args()
    data = json.loads(Path(args.squad).read_text())["data"][: args.articles]
    articles = [(a["title"].replace("_", " "), [p["context"] for p in a["paragraphs"]]) for a in data]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        made = typeset(articles, Path(tmp))
        real = [Path(p) for p in args.pdf if Path(p).is_file()]
        for library in ("pypdf", "pypdfium2", "pdfminer.six"):
            f1s, orders, pages, seconds = [], [], 0, 0.0
            for path, truth in made:
                t0 = time.perf_counter()
                text, n = extract(library, path)
                seconds += time.perf_counter() - t0
                pages += n
                f1, order = quality(text, truth)
                f1s.append(f1)
                orders.append(order)
            real_pages, real_seconds = 0, 0.0
            for path in real:
                t0 = time.perf_counter()
                _, n = extract(library, path)
                real_seconds += time.perf_counter() - t0
                real_pages += n
            results.append({
                "library": library,
                "typeset_pdfs": len(made),
                "typeset_pages": pages,
                "typeset_pages_per_s": round(pages / seconds, 1),
                "word_f1": round(100 * sum(f1s) / len(f1s), 2),
                "word_order": round(100 * sum(orders) / len(orders), 2),
                "real_pdfs": [str(p) for p in real],
                "real_pages": real_pages,
                "real_pages_per_s": round(real_pages / real_seconds, 1) if real_seconds else None,
            })
    print(f"{'library':<13} {'pages':>5} {'pages/s':>8} {'word F1':>8} {'order':>6} {'real pages':>10} {'real pages/s':>12}")
    for r in results:
        print(
            f"{r['library']:<13} {r['typeset_pages']:>5} {r['typeset_pages_per_s']:>8} {r['word_f1']:>8} {r['word_order']:>6} "
            f"{r['real_pages']:>10} {r['real_pages_per_s'] or '':>12}"
        )
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"squad": args.squad, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
