"use strict";
// The page of `qa serve`. Everything from the index is put in the page as text (textContent),
// never as HTML, so a document holding markup or scripts shows them as text and runs nothing.

const $ = (id) => document.getElementById(id);
let token = sessionStorage.getItem("qa-token") || "";

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers);
  if (token) headers.Authorization = "Bearer " + token;
  let response;
  try {
    response = await fetch(path, Object.assign({}, options, { headers }));
  } catch (e) {
    throw new Error("The server cannot be reached.");
  }
  let body = null;
  try { body = await response.json(); } catch (e) { /* not JSON */ }
  if (response.status === 401) {
    $("token-box").hidden = false;
    $("token").focus();
    throw new Error("This server asks for a token: enter it above.");
  }
  if (!response.ok) {
    throw new Error((body && body.error && body.error.message) || "The server answered HTTP " + response.status + ".");
  }
  return body;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// `text` with characters start..end inside a <mark>: [fragment, mark].
function marked(text, start, end) {
  const fragment = document.createDocumentFragment();
  const mark = el("mark", null, text.slice(start, end));
  fragment.append(text.slice(0, start), mark, text.slice(end));
  return [fragment, mark];
}

function message(text, kind) {
  const node = $("message");
  node.textContent = text;
  node.className = kind || "";
}

async function loadInfo() {
  try {
    const info = await api("/info");
    if (!info.ready) {
      $("status").textContent = "loading the index and models…";
      setTimeout(loadInfo, 1000);
      return;
    }
    const select = $("retriever");
    select.replaceChildren(...info.retrievers.map((name) => el("option", null, name)));
    select.value = info.defaults.retriever;
    $("top-k").value = info.defaults.top_k;
    $("top-k").max = info.limits.top_k;
    $("question").maxLength = info.limits.question_chars;
    $("status").textContent = info.index.documents.toLocaleString() + " documents, " +
      info.index.passages.toLocaleString() + " passages";
  } catch (e) {
    $("status").textContent = "";
    message(e.message, "error");
  }
}

async function ask(event) {
  event.preventDefault();
  const question = $("question").value.trim();
  if (!question) {
    message("Type a question first.", "error");
    return;
  }
  $("submit").disabled = true;
  $("answers").replaceChildren();
  message("Searching…", "busy");
  try {
    const body = { question, top_k: Number($("top-k").value) || 10 };
    if ($("retriever").value) body.retriever = $("retriever").value;
    const where = $("where").value.split(";").map((condition) => condition.trim()).filter(Boolean);
    if (where.length) body.where = where;
    const result = await api("/ask", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    render(result);
  } catch (e) {
    message(e.message, "error");
  } finally {
    $("submit").disabled = false;
  }
}

// Where a document comes from: its id, and its source when that says more (a file's id is its path).
function origin(id, source) {
  return source && source !== id ? id + " · " + source : id;
}

function openLink(label, id, start, end) {
  const link = el("a", "doc-link", label);
  link.href = "#";
  link.addEventListener("click", (event) => { event.preventDefault(); openDocument(id, start, end); });
  return link;
}

function render(result) {
  const list = $("answers");
  const seconds = result.seconds.total.toFixed(2) + " s";
  if (!result.reader) {
    message("No reader is loaded: the passages that match best (" + seconds + ").", "empty");
    result.passages.forEach((p) => {
      const item = el("li", "answer");
      const where = el("div", "where");
      where.append(openLink(p.title || p.document, p.document, p.start, p.start), el("span", "muted", " " + p.document));
      item.append(where, el("p", "passage", p.text));
      list.append(item);
    });
    return;
  }
  if (!result.answers.length) {
    message(result.off_topic
      ? "No answer: none of the passages is close to this question; the collection does not seem to cover it."
      : result.abstained
      ? "No answer: the reader judges that none of the passages it read answers this question."
      : "No answer: the collection holds no passage that answers this question.", "empty");
    return;
  }
  const within = result.where && result.where.length
    ? " among the " + result.searched_passages.toLocaleString() + (result.searched_passages === 1 ? " passage" : " passages") +
      " where " + result.where.join(" and ") : "";
  message(result.answers.length + (result.answers.length === 1 ? " answer" : " answers") + within + " in " + seconds +
    (result.warnings.length ? " — " + result.warnings.join("; ") : ""));
  result.answers.forEach((a) => {
    const item = el("li", "answer");
    const head = el("div", "head");
    head.append(el("span", "text", a.answer), el("span", "score", "score " + a.score.toFixed(2)));
    const where = el("div", "where");
    where.append(openLink(a.title || a.document, a.document, a.document_start, a.document_end));
    where.append(el("span", "muted", " " + origin(a.document, a.source)));
    const passage = el("p", "passage");
    passage.append(marked(a.context, a.start, a.end)[0]);
    item.append(head, where);
    if (a.citation || a.link) {  // papers with bibliographic metadata (CORD-19): authors (year). Journal. link
      const cite = el("div", "cite muted", a.citation ? a.citation + ". " : "");
      if (a.link) {
        const out = el("a", "", a.link);
        out.href = a.link;
        out.target = "_blank";
        out.rel = "noopener";
        cite.append(out);
      }
      item.append(cite);
    }
    item.append(passage);
    list.append(item);
  });
}

async function openDocument(id, start, end) {
  try {
    const doc = await api("/documents/" + encodeURIComponent(id) + "?start=" + start + "&end=" + end);
    $("doc-title").textContent = doc.title || doc.document;
    $("doc-source").textContent = origin(doc.document, doc.source);
    const [fragment, mark] = marked(doc.text, start, end);
    mark.id = "doc-answer";
    $("doc-text").replaceChildren(fragment);
    $("document").showModal();
    mark.scrollIntoView({ block: "center" });
  } catch (e) {
    message(e.message, "error");
  }
}

$("ask").addEventListener("submit", ask);
$("doc-close").addEventListener("click", () => $("document").close());
$("document").addEventListener("click", (event) => { if (event.target === $("document")) $("document").close(); });
$("token-box").addEventListener("submit", (event) => {
  event.preventDefault();
  token = $("token").value.trim();
  sessionStorage.setItem("qa-token", token);
  $("token-box").hidden = true;
  message("");
  loadInfo();
});
loadInfo();
