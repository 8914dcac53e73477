// The review queue: predictions the scoring service captured, most uncertain first.
// A accepts the prediction, number keys accept with that tag instead, R rejects.
import { allTags, api, imageUrl, projectPath } from "./api.js";
import { fail, h, percent, say } from "./ui.js";

export async function reviewView(main, project) {
  const info = await api(projectPath(project));
  const tags = await allTags(project);
  const list = h("ol", { class: "review-list", "aria-label": "Pending review items, most uncertain first" });
  const more = h("button", { type: "button", hidden: true }, "Load more");
  let continuation = null;
  main.replaceChildren(
    h("h1", {}, "Review queue"),
    h(
      "p",
      { class: "help" },
      "Predictions the scoring service captured, most uncertain first. On the highlighted item: A accepts the prediction, " +
        (info.type === "detection" ? "" : "a number key accepts it with that tag, ") +
        "R rejects it.",
    ),
    list,
    more,
  );

  function predicted(item) {
    const p = item.prediction || {};
    if (item.task === "detection") return `${(p.detections || []).length} box(es)`;
    if (p.tags) return p.tags.map((t) => `${t.label} ${percent(t.probability)}`).join(", ") || "no tag";
    return p.label ? `${p.label} ${percent(p.probability || 0)}` : "nothing";
  }

  function current() {
    return list.querySelector("li.item");
  }

  function row(item) {
    const img = h("img", { alt: `captured image ${item.filename}`, width: 120, height: 120 });
    imageUrl(`${projectPath(project)}/review-items/${item.id}/content`)
      .then((url) => {
        img.src = url;
      })
      .catch(() => {});
    const accept = (chosen) =>
      decide(
        li,
        item,
        "accept",
        chosen === undefined ? undefined : info.type === "detection" ? undefined : { tags: [chosen] },
      );
    const li = h(
      "li",
      { class: "item", dataset: { id: item.id } },
      img,
      h(
        "div",
        {},
        h(
          "p",
          {},
          h("strong", {}, predicted(item)),
          ` · uncertainty ${percent(item.uncertainty)} · ${item.model} v${item.version}`,
        ),
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "primary", onclick: () => accept() }, h("kbd", {}, "A"), " Accept"),
          info.type === "detection"
            ? null
            : tags.map((t, i) =>
                h("button", { type: "button", onclick: () => accept(t) }, h("kbd", {}, String(i + 1)), ` ${t}`),
              ),
          h("button", { type: "button", onclick: () => decide(li, item, "reject") }, h("kbd", {}, "R"), " Reject"),
        ),
      ),
    );
    return li;
  }

  async function decide(li, item, action, body) {
    try {
      await api(`${projectPath(project)}/review-items/${item.id}/${action}`, {
        method: "POST",
        json: body ?? {},
        headers: { "If-Match": item.etag },
      });
      li.remove();
      say(
        `${action === "accept" ? "Accepted" : "Rejected"} ${item.filename}. ${list.querySelectorAll("li.item").length} left on this page.`,
      );
      if (!current()) await load(null);
      const next = current();
      if (next) next.querySelector("button").focus();
    } catch (e) {
      fail(e);
    }
  }

  async function load(token) {
    const query = new URLSearchParams({ limit: 50 });
    if (token) query.set("continuation", token);
    const page = await api(`${projectPath(project)}/review-items?${query}`);
    if (!token) list.replaceChildren();
    list.append(...page.data.map(row));
    if (!list.children.length) list.append(h("li", { class: "empty" }, "Nothing to review."));
    continuation = page.continuation;
    more.hidden = !continuation;
  }

  more.addEventListener("click", () => load(continuation).catch(fail));

  function onKey(event) {
    if (event.target.closest("input, select, textarea") || event.ctrlKey || event.metaKey || event.altKey) return;
    const li = current();
    if (!li) return;
    const buttons = [...li.querySelectorAll(".actions button")];
    const key = event.key.toLowerCase();
    if (key === "a") buttons[0].click();
    else if (key === "r") buttons[buttons.length - 1].click();
    else if (/^[1-9]$/.test(key) && info.type !== "detection" && tags[Number(key) - 1]) buttons[Number(key)].click();
    else return;
    event.preventDefault();
  }
  document.addEventListener("keydown", onKey);
  await load(null);
  return () => document.removeEventListener("keydown", onKey);
}
