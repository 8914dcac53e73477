// The registry's own dashboard: the model views (visiondock/pages/models.js) read from this registry's API
// with the key kept in the tab. The console (the annotation service's /app) shows the same views beside
// labeling, with one sign-in, and can also try a version on a photo through the scoring service.
import { ApiError, api, h, session } from "/dashboard/common/common.js";
import { modelRoutes, routeOf } from "/dashboard/common/models.js";

const view = document.getElementById("view");
let refreshTimer = null;

const host = {
  registry: (path, options) => api(path, options),
  projectLink: null,
  tryIt: null,
  me: () => api("/v1/me"),
  config: { scoring_public_url: "", promote_alias: "production" }, // /dashboard/config.json, read below
  refresh: (ms) => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(render, ms);
  },
};
const routes = modelRoutes(host);

function askForKey(message = "") {
  document.getElementById("forget-key").hidden = true;
  view.replaceChildren(document.getElementById("key-form").content.cloneNode(true));
  document.getElementById("key-error").textContent = message;
  document.getElementById("api-key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    session.set(document.getElementById("api-key").value.trim());
    render();
  });
  document.getElementById("api-key").focus();
}

let rendering = 0;

async function render() {
  const mine = ++rendering; // a view still loading is not drawn over a newer one
  clearTimeout(refreshTimer);
  if (!session.key) return askForKey();
  document.getElementById("forget-key").hidden = false;
  // "#/" and no hash at all are the models list.
  const hash = /^#?\/?$/.test(location.hash) ? "#/models" : location.hash;
  const shown = routeOf(routes, hash);
  try {
    if (!shown) throw new ApiError(404, `nothing at ${location.hash}`);
    const content = await shown();
    if (mine !== rendering) return;
    view.replaceChildren(...content.filter(Boolean));
    document.body.dataset.loaded = location.hash || "#/";
  } catch (error) {
    if (mine !== rendering) return;
    if (error.status === 401) {
      session.clear();
      return askForKey("The registry refused that API key.");
    }
    view.replaceChildren(
      h(
        "section",
        { class: "card" },
        h("h2", {}, "Something went wrong"),
        h("p", { class: "error", role: "alert" }, error.message),
      ),
    );
    document.body.dataset.loaded = "error";
  }
}

document.getElementById("forget-key").addEventListener("click", () => {
  session.clear();
  render();
});
window.addEventListener("hashchange", render);
fetch("/dashboard/config.json")
  .then((answer) => answer.json())
  .then((config) => Object.assign(host.config, config))
  .finally(render);
