"""Files the tests write: a minimal PDF, a small CORD-19 release, a small SQuAD file and a folder of mixed
files (`mixed_corpus`), built here from the published layouts (PDF 1.4 with the base-14 Helvetica font; CORD-19 ``metadata.csv`` and the
``document_parses`` JSON schema of https://github.com/allenai/cord19)."""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path

import numpy as np


def make_pdf(pages: list[str], title: str = "") -> bytes:
    """A valid PDF whose pages each show one line of ``pages`` text."""
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", None, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for text in pages:
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET"
        objects.append(f"<< /Length {len(stream)} >>\nstream\n{stream}\nendstream")
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {len(objects)} 0 R >>")
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    objects.append(f"<< /Title ({title}) >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1"))
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


CORD19_COLUMNS = [
    "cord_uid", "sha", "source_x", "title", "doi", "pmcid", "pubmed_id", "license", "abstract", "publish_time",
    "authors", "journal", "mag_id", "who_covidence_id", "arxiv_id", "pdf_json_files", "pmc_json_files", "url", "s2_id",
]


def _parse(paper_id: str, title: str, body: list[tuple[str, str]], abstract: str = "") -> str:
    return json.dumps({
        "paper_id": paper_id,
        "metadata": {"title": title, "authors": []},
        "abstract": [{"text": abstract, "cite_spans": [], "ref_spans": [], "section": "Abstract"}] if abstract else [],
        "body_text": [{"text": t, "cite_spans": [], "ref_spans": [], "section": s} for s, t in body],
        "bib_entries": {},
        "ref_entries": {},
        "back_matter": [],
    })


def cord19_files() -> dict[str, str]:
    """A CORD-19 release of five rows: a paper with both parses (PMC wins), one with a PDF parse
    only (abstract from the parse), one with metadata only, a repeated cord_uid, and one whose
    listed parse file is missing."""
    rows = [
        {"cord_uid": "ug7v899j", "sha": "aaa", "title": "Clinical features of culture-proven Mycoplasma pneumoniae infections",
         "abstract": "Mycoplasma pneumoniae is a common cause of pneumonia.", "doi": "10.1186/1471-2334-1-6",
         "authors": "Foy, Hjordis M.; Kenny, George E.; Cooney, Marion K.; Allan, Ian D.",
         "pmcid": "PMC35282", "publish_time": "2001-07-04", "journal": "BMC Infect Dis", "source_x": "PMC",
         "pdf_json_files": "document_parses/pdf_json/aaa.json", "pmc_json_files": "document_parses/pmc_json/PMC35282.xml.json"},
        {"cord_uid": "02tnwd4m", "sha": "bbb", "title": "Nitric oxide: a pro-inflammatory mediator", "abstract": "",
         "pdf_json_files": "document_parses/pdf_json/bbb.json", "pmc_json_files": ""},
        {"cord_uid": "ejv2xln0", "title": "Surfactant protein-D and pulmonary host defense",
         "abstract": "Surfactant protein-D (SP-D) participates in the innate response.", "pdf_json_files": "", "pmc_json_files": ""},
        {"cord_uid": "ug7v899j", "title": "Clinical features (repeated row)", "abstract": "Repeated.", "pdf_json_files": "", "pmc_json_files": ""},
        {"cord_uid": "2b73a28n", "title": "Role of endothelin-1 in lung disease", "abstract": "Endothelin-1 is a peptide.",
         "pdf_json_files": "document_parses/pdf_json/missing.json", "pmc_json_files": ""},
    ]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CORD19_COLUMNS)
    writer.writeheader()
    for row in rows:
        writer.writerow({c: row.get(c, "") for c in CORD19_COLUMNS})
    return {
        "metadata.csv": buffer.getvalue(),
        "document_parses/pmc_json/PMC35282.xml.json": _parse(
            "PMC35282", rows[0]["title"], [("Introduction", "PMC body: pneumonia in children."), ("Introduction", "Second paragraph."), ("Methods", "We reviewed charts.")]
        ),
        "document_parses/pdf_json/aaa.json": _parse("aaa", rows[0]["title"], [("", "PDF body that must lose to PMC.")]),
        "document_parses/pdf_json/bbb.json": _parse(
            "bbb", rows[1]["title"], [("Results", "Nitric oxide is produced by macrophages.")], abstract="Inflammation abstract from the parse."
        ),
    }


PLACES = ["paris", "france", "river", "city", "mountain", "company", "tower", "capital"]
PEOPLE = ["gustave", "eiffel", "engineer", "plants", "cat", "dog", "light", "oxygen"]


def squad_questions(path, n=24, seed=0):
    """A SQuAD file of n one-sentence towers, each with "Who built the tower of PLACE i?"."""
    rng = random.Random(seed)
    articles = []
    for i in range(n):
        place, person, other = rng.choice(PLACES), rng.choice(PEOPLE), rng.choice(PEOPLE)
        context = f"The tower of {place} {i} was built by {person} in 1889. The mat of the {place} was designed by {other}."
        start = context.index(f"by {person}") + 3
        articles.append({"title": f"Tower_{i}", "paragraphs": [{"context": context, "qas": [
            {"id": f"q{i}", "question": f"Who built the tower of {place} {i}?", "answers": [{"text": person, "answer_start": start}]},
        ]}]})
    path.write_text(json.dumps({"version": "1.1", "data": articles}))
    return path


WORDS = ("river bank flood rain cloud storm harbour ship sail wind engine wheel road bridge tower "
         "stone castle king queen crown garden flower tree leaf seed fruit honey bee wolf forest").split()


def mixed_corpus(root: Path, files: int = 12) -> Path:
    """Files of every kind the corpus readers take, with documents of several passages each."""
    rng = np.random.default_rng(0)

    def text(n: int) -> str:
        return ". ".join(" ".join(rng.choice(WORDS, 9)) for _ in range(n)) + "."

    root.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        (root / f"doc{i:02d}.txt").write_text(text(12))
        (root / f"page{i:02d}.md").write_text(f"# Page {i}\n\n{text(6)}")
    (root / "records.jsonl").write_text("".join(json.dumps({"id": f"r{i}", "title": f"R {i}", "text": text(4)}) + "\n" for i in range(20)))
    (root / "broken.json").write_text("{not json")
    (root / "empty.txt").write_text("   ")
    return root
