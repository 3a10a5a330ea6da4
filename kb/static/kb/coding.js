// Insight KB: the interview page's coding panel. Without this script the panel still works:
// the new-theme form posts and comes back to the page, and Save the highlight submits.
"use strict";

// --- The selection, kept: offsets in the highlight form back to a DOM selection -------------
function sourceOf(form) {
  const answer = form.querySelector("[name=answer]").value;
  return answer
    ? document.querySelector(`[data-source][data-answer="${CSS.escape(answer)}"]`)
    : document.getElementById("transcript-source");
}

// Characters [from, to) of the container's text, as a Range across its text nodes.
function rangeOf(container, from, to) {
  const range = document.createRange();
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
  let seen = 0;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const length = node.textContent.length;
    if (from >= seen && from <= seen + length) range.setStart(node, from - seen);
    if (to >= seen && to <= seen + length) {
      range.setEnd(node, to - seen);
      return range;
    }
    seen += length;
  }
  return null;
}

function reselect(form) {
  const from = parseInt(form.querySelector("[name=start]").value, 10);
  const to = parseInt(form.querySelector("[name=end]").value, 10);
  const container = sourceOf(form);
  if (!container || Number.isNaN(from) || Number.isNaN(to)) return;
  const range = rangeOf(container, from, to);
  if (!range) return;
  const selection = document.getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

// --- The codebook tree: a new theme goes under its parent, ticked ----------------------------
function element(tag, attributes = {}, text = "") {
  const node = document.createElement(tag);
  Object.entries(attributes).forEach(([name, value]) => node.setAttribute(name, value));
  if (text) node.textContent = text;
  return node;
}

function childList(tree, parentId) {
  if (!parentId) return tree.querySelector(":scope > ul.codebook-tree");
  const parent = tree.querySelector(`li[data-theme="${parentId}"]`);
  if (!parent) return tree.querySelector(":scope > ul.codebook-tree");
  let details = parent.querySelector(":scope > details");
  if (!details) {
    const name = parent.querySelector(":scope > label").textContent.trim();
    details = element("details", { open: "" });
    details.append(element("summary", {}, `Sub-themes of ${name}`), element("ul", { class: "codebook-tree" }));
    parent.append(details);
  }
  details.open = true;
  return details.querySelector(":scope > ul.codebook-tree");
}

function addTheme(tree, theme) {
  const item = element("li", { "data-theme": String(theme.id) });
  const label = element("label");
  const box = element("input", { type: "checkbox", name: "themes", value: String(theme.id) });
  box.checked = true;
  const swatch = element("span", { class: "swatch", "aria-hidden": "true" });
  swatch.style.setProperty("--colour", theme.colour);
  label.append(box, " ", swatch, theme.name);
  item.append(label);
  childList(tree, theme.parent).append(item);
  tree.querySelector("[data-codebook-empty]")?.remove();
  return box;
}

// --- The new-theme form, sent in the background ----------------------------------------------
function showErrors(form, errors) {
  form.querySelectorAll(".errorlist[data-from-script]").forEach((list) => list.remove());
  form.querySelectorAll("[aria-invalid]").forEach((input) => input.removeAttribute("aria-invalid"));
  const general = [];
  Object.entries(errors).forEach(([name, messages]) => {
    const input = form.querySelector(`[name="theme-${name}"]`);
    const list = element("ul", { class: "errorlist", "data-from-script": "" });
    messages.forEach((error) => list.append(element("li", {}, error.message)));
    if (!input) {
      general.push(...messages.map((error) => error.message));
      return;
    }
    list.id = `${input.id}-script-errors`;
    input.setAttribute("aria-invalid", "true");
    input.setAttribute("aria-describedby", list.id);
    input.closest(".field").append(list);
  });
  return general;
}

function setUpThemeForm(themeForm, highlightForm) {
  const status = themeForm.querySelector("[data-theme-status]");
  const tree = highlightForm.querySelector("fieldset.codebook");
  themeForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    status.textContent = "Adding the theme…";
    let response;
    try {
      response = await fetch(themeForm.action, {
        method: "POST",
        body: new FormData(themeForm),
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
    } catch (error) {
      status.textContent = "The theme was not added: the server did not answer. Try again.";
      return;
    }
    const body = await response.json();
    if (!response.ok) {
      const general = showErrors(themeForm, body.errors || {});
      status.textContent = ["The theme was not added.", ...general].join(" ");
      themeForm.querySelector("[aria-invalid]")?.focus();
      return;
    }
    showErrors(themeForm, {});
    const box = addTheme(tree, body);
    const parentSelect = themeForm.querySelector("[name='theme-parent']");
    parentSelect?.append(element("option", { value: String(body.id) }, body.name));
    themeForm.querySelector("[name='theme-name']").value = "";
    status.textContent = `Theme ${body.name} added and ticked; your selection is kept.`;
    reselect(highlightForm);
    box.focus();
  });
}

// Enter on a ticked theme saves the highlight, as Enter in a text field submits its form.
function setUpEnterToSave(form) {
  form.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target.matches("input[type=checkbox], input[type=radio]")) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  const highlightForm = document.querySelector("form[data-highlight-form]");
  if (!highlightForm) return;
  setUpEnterToSave(highlightForm);
  const themeForm = document.querySelector("form[data-theme-form]");
  if (themeForm) setUpThemeForm(themeForm, highlightForm);
});
