"""The web page of `qa serve` in a real headless Chromium (Debian's chromium and chromium-driver,
driven by selenium), over an index built with the real all-MiniLM-L6-v2 and the packaged reader.

Set QA_SCREENSHOTS=DIR to keep screenshots of the page at laptop and phone widths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from qa.indexer import EmbeddingOptions, build_index
from qa.server import ServerSettings
from tests.serving import running

CHROMIUM, DRIVER = shutil.which("chromium") or shutil.which("chromium-browser"), shutil.which("chromedriver")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not (CHROMIUM and DRIVER), reason="no Chromium: apt-get install chromium chromium-driver (CI installs them)"),
]
ATTACK = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"
FILLER = "\n\n".join(f"Paragraph {i} of the history of Paris, about streets, bridges and markets." for i in range(60))


@pytest.fixture(scope="module")
def page_index(minilm_path, tmp_path_factory) -> Path:
    corpus = tmp_path_factory.mktemp("page-corpus")
    (corpus / "eiffel.md").write_text(
        "# Eiffel Tower\n\n" + FILLER + "\n\nThe Eiffel Tower was built by the company of the engineer Gustave Eiffel "
        "and finished in 1889, for the World's Fair."
    )
    (corpus / "attack.html").write_text(
        f"<html><head><title>Markup</title></head><body><p>The lighthouse was designed by Sostratus of Cnidus. "
        f"&lt;script&gt;window.__pwned = 1&lt;/script&gt; {ATTACK.replace('<', '&lt;')}</p></body></html>"
    )
    (corpus / "attack.txt").write_text(f"The library keeper was {ATTACK} Demetrius of Phalerum, who ran the library.")
    index = tmp_path_factory.mktemp("page-index") / "index"
    build_index(corpus, index, embedding=EmbeddingOptions(str(minilm_path)))
    return index


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    yield driver
    driver.quit()


def ask(browser, question: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    box = browser.find_element(By.ID, "question")
    box.clear()
    box.send_keys(question + Keys.ENTER)  # the keyboard alone asks
    wait = WebDriverWait(browser, 60)
    wait.until(lambda b: b.find_element(By.ID, "message").get_attribute("class") != "busy")
    return browser.find_elements(By.CSS_SELECTOR, "#answers > li")


def shoot(browser, name: str) -> None:
    if os.environ.get("QA_SCREENSHOTS"):
        Path(os.environ["QA_SCREENSHOTS"]).mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(Path(os.environ["QA_SCREENSHOTS"]) / f"{name}.png"))


def test_ask_in_the_page_and_open_the_answer_in_its_document(browser, page_index):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running(page_index, None) as url:
        browser.set_window_size(1280, 900)
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda b: "passages" in b.find_element(By.ID, "status").text)
        assert not browser.find_element(By.ID, "token-box").is_displayed()  # no token asked for
        answers = ask(browser, "Who built the Eiffel Tower?")
        assert answers, browser.find_element(By.ID, "message").text
        first = answers[0]
        answer = first.find_element(By.CSS_SELECTOR, ".head .text").text
        assert "Gustave Eiffel" in answer
        assert first.find_element(By.CSS_SELECTOR, ".passage mark").text == answer  # highlighted in its passage
        assert "Eiffel Tower" in first.find_element(By.CSS_SELECTOR, ".doc-link").text
        shoot(browser, "serve-answers")
        first.find_element(By.CSS_SELECTOR, ".doc-link").click()
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "document").get_attribute("open") is not None)
        mark = browser.find_element(By.ID, "doc-answer")
        assert mark.text == answer
        assert "Paragraph 59" in browser.find_element(By.ID, "doc-text").text  # the whole document
        visible = browser.execute_script(
            "const m = arguments[0].getBoundingClientRect(), d = document.getElementById('document').getBoundingClientRect();"
            "return m.top >= d.top && m.bottom <= d.bottom;", mark)
        assert visible, "the document view is not scrolled to the answer"
        shoot(browser, "serve-document")
        browser.find_element(By.ID, "doc-close").click()
        assert browser.find_element(By.ID, "document").get_attribute("open") is None

        browser.find_element(By.ID, "where").send_keys("id=attack* ; title~markup")  # the lighthouse page alone
        answers = ask(browser, "Who built the Eiffel Tower?")  # answered above from the Eiffel Tower's page
        assert all(a.find_element(By.CSS_SELECTOR, ".doc-link").text == "Markup" for a in answers)
        said = browser.find_element(By.ID, "message").text
        assert ("passages where id=attack* and title~markup" in said) if answers else ("No answer" in said)
        browser.find_element(By.ID, "where").clear()


def test_markup_in_documents_is_shown_as_text_and_never_runs(browser, page_index):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with running(page_index, None) as url:
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda b: "passages" in b.find_element(By.ID, "status").text)
        for question in ("Who was the library keeper?", "Who designed the lighthouse?"):
            answers = ask(browser, question)
            assert answers
            assert "<script>" in browser.find_element(By.ID, "answers").text  # shown, as text
            for link in browser.find_elements(By.CSS_SELECTOR, ".doc-link"):
                link.click()
                WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "document").get_attribute("open") is not None)
                browser.find_element(By.ID, "doc-close").click()
        assert browser.execute_script("return window.__pwned === undefined")
        assert not browser.find_elements(By.CSS_SELECTOR, "#answers script, #answers img, #doc-text script, #doc-text img")


def test_no_answer_error_and_token_states_and_a_phone_width(browser, page_index, monkeypatch):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import qa.pipeline

    with running(page_index, None, ServerSettings(token="t0ken")) as url:
        browser.set_window_size(390, 844)
        browser.get(url + "/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "token-box").is_displayed())
        browser.find_element(By.ID, "token").send_keys("t0ken\n")
        WebDriverWait(browser, 30).until(lambda b: "passages" in b.find_element(By.ID, "status").text)
        assert not browser.find_element(By.ID, "token-box").is_displayed()
        assert ask(browser, "Who built the Eiffel Tower?")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
        shoot(browser, "serve-phone")
        monkeypatch.setattr(qa.pipeline, "rank_answers", lambda *args, **kwargs: [])
        assert ask(browser, "Who built the Eiffel Tower?") == []
        message = browser.find_element(By.ID, "message")
        assert message.text.startswith("No answer") and message.get_attribute("class") == "empty"
        browser.execute_script("document.getElementById('retriever').add(new Option('grep')); document.getElementById('retriever').value = 'grep'")
        assert ask(browser, "Who built the Eiffel Tower?") == []
        assert "unknown retriever" in message.text and message.get_attribute("class") == "error"
        browser.set_window_size(1280, 900)
