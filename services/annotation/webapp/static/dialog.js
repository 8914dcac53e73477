// Questions asked before a change that cannot be taken back: a modal <dialog> (focus kept inside, Escape
// cancels) that says what will happen; Cancel has the focus first, so Enter never confirms by accident.
import { h } from "./ui.js";

let asked = 0;

// Asks and answers {ok, value}: ok when the person confirmed; value is the text typed in the field, if any.
//   title, message (text or nodes), confirm: the confirming button's text, danger: it is red;
//   field: {label, value, placeholder}: a text field whose value comes back;
//   mustType: the text the field must hold before the confirming button works (a project's name).
export function ask({ title, message, confirm, danger = false, field = null, mustType = null }) {
  const id = `dialog-${++asked}`;
  const input = field
    ? h("input", {
        id: `${id}-field`,
        value: field.value ?? "",
        placeholder: field.placeholder,
        autocomplete: "off",
        spellcheck: "false",
      })
    : null;
  const confirmButton = h("button", { type: "submit", class: danger ? "danger" : "primary", value: "ok" }, confirm);
  const cancelButton = h("button", { type: "button" }, "Cancel");
  const dialog = h(
    "dialog",
    { class: "ask", "aria-labelledby": `${id}-title`, "aria-describedby": `${id}-message` },
    h(
      "form",
      { method: "dialog" },
      h("h2", { id: `${id}-title` }, title),
      h("div", { id: `${id}-message`, class: "ask-message" }, message),
      input ? [h("label", { for: input.id }, field.label), input] : null,
      h("div", { class: "actions" }, cancelButton, confirmButton),
    ),
  );
  const ready = () => {
    confirmButton.disabled = Boolean(mustType) && input.value.trim() !== mustType;
  };
  if (input) input.addEventListener("input", ready);
  ready();
  cancelButton.addEventListener("click", () => dialog.close("cancel"));
  document.body.append(dialog);
  dialog.showModal();
  (input || cancelButton).focus();
  if (input && !mustType) input.select();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      const ok = dialog.returnValue === "ok";
      dialog.remove();
      resolve({ ok, value: input ? input.value.trim() : null });
    });
  });
}
