// A secret the API shows once (an API key, a source token): shown in a modal with a copy button.
import { h } from "../dom.js";
import { modal, toast } from "../ui.js";

export function showSecretOnce(title, label, secret) {
  const output = h("output", { class: "secret-value" }, secret);
  const copy = h("button", { type: "button" }, "Copy");
  copy.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(secret);
      toast("Copied.");
    } catch {
      toast("Select the text and copy it.", "error");
    }
  });
  const done = h("button", { type: "button", class: "primary" }, "I have stored it");
  const { close } = modal(title, h("div", { class: "secret-once" },
    h("p", {}, h("strong", {}, label), ": shown this once. Store it now; Event Manager keeps only a digest."),
    output, h("div", { class: "actions" }, copy, done)));
  done.addEventListener("click", close);
}
