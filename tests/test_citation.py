"""How answers over CORD-19 are cited: the line `qa ask` prints under an answer, from the metadata
kept by the corpus reader, and the metadata reaching the answers of `qa ask --json`."""

import json

from typer.testing import CliRunner

from qa.citation import citation, link
from qa.cli import app

from corpus_fixtures import cord19_files


def test_a_citation_names_three_authors_the_year_the_journal_and_the_doi():
    metadata = {"authors": "Foy, Hjordis M.; Kenny, George E.; Cooney, Marion K.; Allan, Ian D.", "publish_time": "2001-07-04",
                "journal": "BMC Infect Dis", "doi": "10.1186/1471-2334-1-6", "pmcid": "PMC35282"}
    assert citation(metadata) == "Foy, Kenny, Cooney et al. (2001). BMC Infect Dis"
    assert citation({"authors": "Foy, H.", "publish_time": "2020"}) == "Foy (2020)"
    assert citation({"publish_time": "2020-01-02", "journal": "Lancet"}) == "(2020). Lancet"
    assert citation({"title": "only a title", "parse": None}) is None


def test_the_link_prefers_the_doi_then_pmc_then_pubmed_then_the_first_url():
    assert link({"doi": "https://doi.org/10.1/x", "pmcid": "PMC1"}) == "https://doi.org/10.1/x"
    assert link({"pmcid": "PMC1", "pubmed_id": "7"}) == "https://www.ncbi.nlm.nih.gov/pmc/articles/PMC1/"
    assert link({"pubmed_id": "7", "url": "https://a"}) == "https://pubmed.ncbi.nlm.nih.gov/7/"
    assert link({"url": "https://a; https://b"}) == "https://a"
    assert link({}) is None


def test_qa_ask_over_cord19_cites_the_paper_of_each_answer(tiny_models, write_files, tmp_path):
    runner = CliRunner()
    corpus = write_files({f"cord/{k}": v for k, v in cord19_files().items()})
    index = tmp_path / "index"
    result = runner.invoke(app, ["index", str(corpus / "cord"), "-i", str(index), "--embedding-model", str(tiny_models["encoder"])])
    assert result.exit_code == 0, result.output
    args = ["ask", "What causes pneumonia in children?", "-i", str(index), "--reader", str(tiny_models["reader"]), "-n", "20"]
    data = json.loads(runner.invoke(app, [*args, "--json"]).stdout)
    by_document = {a["document"]: a["metadata"] for a in data["answers"]}
    assert by_document, data
    for document, metadata in by_document.items():
        assert ("doi" in metadata) == (document == "ug7v899j")
    assert by_document["ug7v899j"]["journal"] == "BMC Infect Dis"  # 20 answers from every passage: that paper's among them
    text = runner.invoke(app, args).stdout
    assert "Foy, Kenny, Cooney et al. (2001). BMC Infect Dis. https://doi.org/10.1186/1471-2334-1-6" in text


def test_qa_ask_over_cord19_searches_only_the_papers_where_asked(tiny_models, write_files, tmp_path):
    runner = CliRunner()
    corpus = write_files({f"cord/{k}": v for k, v in cord19_files().items()})
    index = tmp_path / "index"
    assert runner.invoke(app, ["index", str(corpus / "cord"), "-i", str(index), "--embedding-model", str(tiny_models["encoder"])]).exit_code == 0
    args = ["ask", "What causes pneumonia in children?", "-i", str(index), "--reader", str(tiny_models["reader"]), "--json"]
    everything = json.loads(runner.invoke(app, args).stdout)
    assert len({p["document"] for p in everything["passages"]}) > 1
    for where in (["publish_time<=2001"], ["journal~infect", "publish_time>=2001-07"], ["authors~kenny"]):
        data = json.loads(runner.invoke(app, [*args, *(a for w in where for a in ("--where", w))]).stdout)
        assert {p["document"] for p in data["passages"]} == {"ug7v899j"}, where
    result = runner.invoke(app, [*args, "--where", "publish_time>=2020"])
    assert result.exit_code == 1 and "no document in the index meets publish_time>=2020" in result.output
