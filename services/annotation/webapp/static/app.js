// The console: one sign-in, projects and their labeling views, and the models (the registry's versions,
// runs, a version's Test page: visiondock/pages/models.js), under one hash router.
import { modelRoutes, routeOf } from "/app/common/models.js";
import { api, registry, session } from "./api.js";
import { imagesView } from "./images.js";
import { labelerView } from "./labeler.js";
import { datasetView, deleteProject, tagsView } from "./projects.js";
import { reviewView } from "./review.js";
import { trainingView } from "./training.js";
import { tryIt } from "./tryit.js";
import { fail, h, say } from "./ui.js";

const main = document.getElementById("main");
let cleanup = () => {};
let refreshTimer = null;
const config = fetch("/app/config.json").then((answer) => answer.json());

// Where the model views find things in the console: the registry and the scoring service through this
// service's proxies, projects here.
const host = {
  registry,
  projectLink: (project) => `#/p/${encodeURIComponent(project)}/images`,
  me: () => api("/v1/me"),
  config: {},
  tryIt,
  refresh: (ms) => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(route, ms);
  },
};
const models = modelRoutes(host);

function signInView() {
  const input = h("input", { id: "api-key", type: "password", autocomplete: "current-password", required: true });
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    {
      class: "card narrow",
      onsubmit: async (event) => {
        event.preventDefault();
        const key = input.value.trim();
        try {
          const answer = await fetch("/v1/me", { headers: { "X-API-Key": key } });
          if (answer.status === 401) {
            error.textContent = "That API key was not accepted.";
            return;
          }
          if (!answer.ok) throw new Error((await answer.json()).detail);
          session.set(key);
          // The page the link pointed at, kept through the sign-in; the projects when there was none.
          if (!location.hash || location.hash === "#/") location.hash = "#/projects";
          route();
        } catch (e) {
          error.textContent = e.message;
        }
      },
    },
    h("h1", {}, "Sign in"),
    h(
      "p",
      {},
      "Use an API key of this VisionDock deployment: one sign-in for labeling and for the models. ",
      "It is kept in this tab only and forgotten when the tab closes.",
    ),
    h("label", { for: "api-key" }, "API key"),
    input,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
    error,
  );
  main.replaceChildren(form);
  input.focus();
}

async function projectsView() {
  const list = h("tbody");
  const table = h(
    "table",
    { class: "projects" },
    h("caption", {}, "Projects"),
    h(
      "thead",
      {},
      h(
        "tr",
        {},
        ["Project", "Type", "Images", "Labeled", "Description"].map((c) => h("th", { scope: "col" }, c)),
        h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")),
      ),
    ),
    list,
  );
  const id = h("input", {
    id: "new-id",
    required: true,
    pattern: "[a-z0-9][a-z0-9\\-]{0,62}",
    placeholder: "shelf-products",
  });
  const type = h(
    "select",
    { id: "new-type" },
    ["multiclass", "multilabel", "detection"].map((t) => h("option", { value: t }, t)),
  );
  const tags = h("input", { id: "new-tags", placeholder: "rose, tulip, daisy" });
  const description = h("input", { id: "new-description" });
  const form = h(
    "form",
    {
      class: "card",
      onsubmit: async (event) => {
        event.preventDefault();
        try {
          const names = tags.value
            .split(",")
            .map((t) => t.trim())
            .filter(Boolean);
          await api("/v1/projects", {
            method: "POST",
            json: { id: id.value.trim(), type: type.value, tags: names, description: description.value },
          });
          say(`Project ${id.value} created.`);
          location.hash = `#/p/${id.value.trim()}/images`;
        } catch (e) {
          fail(e);
        }
      },
    },
    h("h2", {}, "New project"),
    h(
      "div",
      { class: "fields" },
      h("label", { for: "new-id" }, "Id (lowercase, digits, -)"),
      id,
      h("label", { for: "new-type" }, "Type"),
      type,
      h("label", { for: "new-tags" }, "Tags (comma-separated)"),
      tags,
      h("label", { for: "new-description" }, "Description"),
      description,
    ),
    h("button", { type: "submit", class: "primary" }, "Create project"),
  );
  main.replaceChildren(h("h1", {}, "Projects"), table, form);
  try {
    const projects = (await api("/v1/projects?limit=1000")).data;
    if (!projects.length) list.append(h("tr", {}, h("td", { colspan: 6 }, "No projects yet: create one below.")));
    for (const p of projects) {
      const images = h("td", {}, "…");
      const labeled = h("td", {}, "…");
      list.append(
        h(
          "tr",
          {},
          h("td", {}, h("a", { href: `#/p/${p.id}/images` }, p.id)),
          h("td", {}, p.type),
          images,
          labeled,
          h("td", {}, p.description),
          h(
            "td",
            {},
            h(
              "button",
              {
                type: "button",
                class: "danger",
                "aria-label": `Delete project ${p.id}`,
                onclick: async () => (await deleteProject(p.id)) && projectsView(),
              },
              "Delete…",
            ),
          ),
        ),
      );
      api(`/v1/projects/${p.id}/stats`)
        .then((s) => {
          images.textContent = s.image_count;
          labeled.textContent = s.labeled_count;
        })
        .catch(fail);
    }
  } catch (e) {
    fail(e);
  }
}

function projectNav(project, current) {
  const nav = document.getElementById("project-nav");
  if (!project) {
    nav.replaceChildren();
    return;
  }
  const link = (view, text) =>
    h("a", { href: `#/p/${project}/${view}`, "aria-current": current === view ? "page" : false }, text);
  nav.replaceChildren(
    h("span", { class: "project-name" }, project),
    link("images", "Images"),
    link("tags", "Tags"),
    link("data", "Import / export"),
    link("review", "Review queue"),
    link("training", "Training"),
    // The model a project trains has the project's name.
    h("a", { href: `#/models/${encodeURIComponent(project)}` }, "Model"),
  );
}

// The console's own sections: which one the page shows now.
function consoleNav(current) {
  for (const link of document.querySelectorAll("#console-nav a")) {
    link.setAttribute("aria-current", link.dataset.section === current ? "page" : "false");
  }
}

let shownView = 0;

// A model view drawn into the page, unless the person went elsewhere meanwhile (or was signed out: a 401 has
// already brought the sign-in form).
async function modelView(show) {
  const mine = ++shownView;
  let content;
  try {
    Object.assign(host.config, await config);
    content = await show();
  } catch (e) {
    if (mine !== shownView || e.status === 401) return;
    content = [h("h1", {}, "Something went wrong"), h("p", { class: "error", role: "alert" }, e.message)];
    fail(e);
  }
  if (mine !== shownView) return;
  main.replaceChildren(h("div", { class: "models-view" }, content.filter(Boolean)));
  document.body.dataset.loaded = location.hash;
}

const routes = [
  [/^#\/p\/([^/]+)\/images$/, (m) => imagesView(main, m[1]), "images"],
  [/^#\/p\/([^/]+)\/label\/([0-9a-f]+)$/, (m) => labelerView(main, m[1], m[2]), "images"],
  [/^#\/p\/([^/]+)\/tags$/, (m) => tagsView(main, m[1]), "tags"],
  [/^#\/p\/([^/]+)\/data$/, (m) => datasetView(main, m[1]), "data"],
  [/^#\/p\/([^/]+)\/review$/, (m) => reviewView(main, m[1]), "review"],
  [/^#\/p\/([^/]+)\/training$/, (m) => trainingView(main, m[1]), "training"],
];

async function route() {
  shownView++; // a model view still loading is not drawn over this one
  cleanup();
  cleanup = () => {};
  clearTimeout(refreshTimer);
  delete document.body.dataset.loaded;
  say("");
  document.getElementById("sign-out").hidden = !session.key;
  document.getElementById("console-nav").hidden = !session.key;
  if (!session.key) {
    projectNav(null);
    signInView();
    return;
  }
  for (const [pattern, view, tab] of routes) {
    const match = location.hash.match(pattern);
    if (match) {
      consoleNav("projects");
      projectNav(decodeURIComponent(match[1]), tab);
      cleanup = (await view(match)) || (() => {});
      return;
    }
  }
  const shown = routeOf(models, location.hash);
  if (shown) {
    consoleNav(location.hash.startsWith("#/runs") ? "runs" : "models");
    projectNav(null);
    await modelView(shown);
    return;
  }
  consoleNav("projects");
  projectNav(null);
  await projectsView();
}

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  location.hash = "";
  route();
});
window.addEventListener("signed-out", () => {
  session.clear();
  route();
});
window.addEventListener("hashchange", route);
route();
