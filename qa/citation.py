"""How an answer's document is cited: authors, year and journal, and a link, from the metadata a corpus
reader kept (the bibliographic columns of CORD-19's ``metadata.csv``; any document whose metadata
has the same keys is cited the same way)."""

from __future__ import annotations

from collections.abc import Mapping

AUTHORS_SHOWN = 3


def link(metadata: Mapping[str, object]) -> str | None:
    """The best link to the paper: its DOI, else its PubMed Central or PubMed page, else its first URL."""
    doi = str(metadata.get("doi") or "").strip()
    for prefix in ("https://doi.org/", "http://doi.org/", "http://dx.doi.org/", "doi:"):
        doi = doi.removeprefix(prefix)
    if doi:
        return f"https://doi.org/{doi}"
    pmcid = str(metadata.get("pmcid") or "").strip()
    if pmcid:
        return f"https://www.ncbi.nlm.nih.gov/pmc/articles/{pmcid}/"
    pubmed = str(metadata.get("pubmed_id") or "").strip()
    if pubmed:
        return f"https://pubmed.ncbi.nlm.nih.gov/{pubmed}/"
    urls = [u.strip() for u in str(metadata.get("url") or "").split(";") if u.strip()]
    return urls[0] if urls else None


def authors(metadata: Mapping[str, object], shown: int = AUTHORS_SHOWN) -> str:
    """``"Last, First; Last, First"`` as the first ``shown`` surnames, then "et al."."""
    names = [n.strip() for n in str(metadata.get("authors") or "").split(";") if n.strip()]
    surnames = [n.split(",")[0].strip() for n in names]
    return ", ".join(surnames[:shown]) + (" et al." if len(surnames) > shown else "")


def citation(metadata: Mapping[str, object]) -> str | None:
    """"Authors (year). Journal", what the metadata holds of them; None when it holds none
    (the link is :func:`link`)."""
    year = str(metadata.get("publish_time") or "").strip()[:4]
    names = authors(metadata)
    parts = [f"{names} ({year})" if names and year else names or (f"({year})" if year else "")]
    parts.append(str(metadata.get("journal") or "").strip())
    return ". ".join(p for p in parts if p) or None
