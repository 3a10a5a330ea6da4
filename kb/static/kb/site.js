// Insight KB: small progressive enhancements. Every page works without them, except the
// live progress of a run (which then needs a reload) and capturing a selection's offsets.
"use strict";

function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  return input ? input.value : "";
}

// --- Markdown preview: a button under every Markdown textarea --------------------------------
function setUpMarkdownPreview(form) {
  const url = form.dataset.previewUrl;
  form.querySelectorAll("textarea[data-markdown]").forEach((textarea) => {
    const button = document.createElement("button");
    button.type = "button";
    button.className = "secondary preview-button";
    button.textContent = "Preview";
    const output = document.createElement("div");
    output.className = "preview markdown";
    output.setAttribute("aria-live", "polite");
    output.hidden = true;
    textarea.insertAdjacentElement("afterend", output);
    textarea.insertAdjacentElement("afterend", button);
    button.addEventListener("click", async () => {
      const body = new URLSearchParams({ text: textarea.value });
      const response = await fetch(url, {
        method: "POST",
        body,
        headers: { "X-CSRFToken": csrfToken() },
        credentials: "same-origin",
      });
      output.innerHTML = await response.text(); // sanitised server-side by kb.markup
      output.hidden = false;
    });
  });
}

// --- Highlighting: offsets come from the selection inside a source-text container ------------
function offsetWithin(container, node, offset) {
  const range = document.createRange();
  range.selectNodeContents(container);
  range.setEnd(node, offset);
  return range.toString().length;
}

function setUpHighlighting(form) {
  const fields = {
    start: form.querySelector("[name=start]"),
    end: form.querySelector("[name=end]"),
    answer: form.querySelector("[name=answer]"),
    quote: form.querySelector("[name=quote]"),
  };
  const status = document.getElementById("selection-status");
  document.addEventListener("selectionchange", () => {
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0 || selection.isCollapsed) return;
    const range = selection.getRangeAt(0);
    const start = range.startContainer.parentElement?.closest("[data-source]");
    const end = range.endContainer.parentElement?.closest("[data-source]");
    if (!start || start !== end) return;
    const from = offsetWithin(start, range.startContainer, range.startOffset);
    const to = offsetWithin(start, range.endContainer, range.endOffset);
    if (to <= from) return;
    fields.start.value = from;
    fields.end.value = to;
    fields.answer.value = start.dataset.answer || "";
    fields.quote.value = start.textContent.slice(from, to);
    if (status) {
      const where = start.dataset.answer ? "an answer" : "the transcript";
      status.textContent = `Selected ${to - from} characters of ${where}.`;
    }
  });
  // Typing a quote by hand drops the captured offsets; the server then finds the quote.
  fields.quote.addEventListener("input", () => {
    fields.start.value = "";
    fields.end.value = "";
  });
}

// --- Live run progress: poll a fragment and swap it in, until the run is finished ------------
function setUpLiveRun(container) {
  const url = container.dataset.liveUrl;
  const poll = async () => {
    if (container.querySelector("[data-finished=true]")) return;
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      if (response.ok) container.innerHTML = await response.text();
    } catch (error) {
      // A dropped request is retried at the next tick.
    }
    window.setTimeout(poll, 1000);
  };
  window.setTimeout(poll, 1000);
}

// --- Theme colours: data-colour="#rrggbb" becomes the element's --colour (site.css) -----------
// Set through the CSSOM, which the Content-Security-Policy allows, where a style="" attribute
// in the page would be refused. Without scripts, tags and highlights show a default colour.
function applyColours(root) {
  root.querySelectorAll("[data-colour]").forEach((element) => {
    element.style.setProperty("--colour", element.dataset.colour);
  });
}

// --- Change form: only the chosen operation's parameter fields show -------------------------
// Each parameter input names the operations that use it (data-operations); the others are
// hidden, and the server ignores them. While no operation is chosen, only fields with an error
// show. The layer fields suggest the chosen model's layers (a <datalist> per model).
function setUpChangeForm(form) {
  const operation = form.querySelector("select[name=operation]");
  const model = form.querySelector("select[name=target_model]");
  const parameters = form.querySelectorAll("[data-operations]");
  const showParameters = () => {
    parameters.forEach((input) => {
      const wrapper = input.closest(".field");
      const used = input.dataset.operations.split(" ").includes(operation.value);
      const erred = operation.value === "" && wrapper.classList.contains("has-errors");
      wrapper.hidden = !(used || erred);
    });
  };
  const offerLayers = () => {
    const list = document.getElementById(`layers-of-model-${model.value}`);
    form.querySelectorAll("[data-layer-list]").forEach((input) => {
      if (list) input.setAttribute("list", list.id);
      else input.removeAttribute("list");
    });
  };
  operation.addEventListener("change", showParameters);
  if (model) model.addEventListener("change", offerLayers);
  showParameters();
}

// Forms that undo work (cancel a run, remove evidence) ask first. Delegated from the document,
// because the run page replaces its live fragment, buttons included, every second. A yes is
// sent along (confirmed=yes); without scripts the server asks on a page of its own instead.
document.addEventListener("submit", (event) => {
  const form = event.target;
  const question = form.dataset.confirm;
  if (!question) return;
  if (!window.confirm(question)) {
    event.preventDefault();
    return;
  }
  if (!form.querySelector("input[name=confirmed]")) {
    const confirmed = document.createElement("input");
    confirmed.type = "hidden";
    confirmed.name = "confirmed";
    confirmed.value = "yes";
    form.append(confirmed);
  }
});

document.addEventListener("DOMContentLoaded", () => {
  applyColours(document);
  document.querySelectorAll("form[data-preview-url]").forEach(setUpMarkdownPreview);
  document.querySelectorAll("form[data-highlight-form]").forEach(setUpHighlighting);
  document.querySelectorAll("[data-live-url]").forEach(setUpLiveRun);
  document.querySelectorAll("select[name=operation]").forEach((select) => {
    if (select.form.querySelector("[data-operations]")) setUpChangeForm(select.form);
  });
});
