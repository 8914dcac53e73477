// A version's "Test and use" page: try it on a photo (where the host page can reach the scoring service)
// and the URLs and code that call it (snippets.js), naming the caller's key, never holding its secret.
import { h } from "./common.js";
import { thresholdNote } from "./numbers.js";
import { card, modelPath, table, versionHeader } from "./parts.js";
import { curlSnippet, keyProblem, predictionUrls, pythonSnippet, skillSnippet, skillUrl } from "./snippets.js";

function copyBlock(id, title, text) {
  const code = h("code", {}, text);
  const button = h(
    "button",
    {
      type: "button",
      class: "copy",
      onclick: async () => {
        try {
          await navigator.clipboard.writeText(text);
          button.textContent = "Copied";
        } catch {
          // No clipboard (an insecure origin): select the text for Ctrl+C instead.
          const range = document.createRange();
          range.selectNodeContents(code);
          getSelection().removeAllRanges();
          getSelection().addRange(range);
          button.textContent = "Selected: press Ctrl+C";
        }
      },
    },
    "Copy",
  );
  return h(
    "div",
    { class: "snippet", id },
    h("div", { class: "snippet-head" }, h("h3", {}, title), button),
    h("pre", { tabindex: "0", "aria-label": title }, code),
  );
}

function usePanel({ model, version, aliases, task, me, publicUrl, promoteAlias }) {
  const pointing = Object.entries(aliases)
    .filter(([, v]) => v === version)
    .map(([alias]) => alias);
  // The alias a promotion sets, even before there is one: the URL a caller will use.
  const names = [...new Set([...Object.keys(aliases), ...(promoteAlias ? [promoteAlias] : [])])];
  const urls = predictionUrls(publicUrl, model, { version, aliases: names });
  const choices = [
    ...pointing.map((alias) => [urls.aliases[alias], `${alias} (follows each promotion; v${version} now)`]),
    [urls.version, `version ${version} only (answers while the scoring service serves it)`],
  ];
  const snippets = h("div", { class: "snippets" });
  const keyName = me?.name;
  const show = (url) => {
    const blocks = [
      copyBlock("snippet-curl", "curl", curlSnippet(url, keyName)),
      copyBlock("snippet-python", "Python (httpx)", pythonSnippet(url, keyName, task)),
      copyBlock(
        "snippet-skill",
        "Azure AI Search custom skill",
        skillSnippet({ url: skillUrl(url, task), model, task, keyName }),
      ),
    ];
    if (!url.startsWith("https://")) {
      blocks.push(
        h(
          "p",
          { class: "caveat" },
          "Azure AI Search calls skills over HTTPS only: give the scoring service an HTTPS address ",
          "(VISIONDOCK_SCORING_PUBLIC_URL) before using the skill definition.",
        ),
      );
    }
    snippets.replaceChildren(...blocks);
  };
  const picker = h(
    "select",
    { id: "snippet-url", "aria-label": "The URL the code calls", onchange: (e) => show(e.target.value) },
    choices.map(([url, label]) => h("option", { value: url }, label)),
  );
  show(choices[0][0]);
  const problem = keyProblem(me, model);
  return h(
    "div",
    { id: "use" },
    table(
      ["what", "prediction URL"],
      [
        ...Object.entries(urls.aliases).map(([alias, url]) =>
          h(
            "tr",
            { dataset: { alias } },
            h("td", {}, aliases[alias] ? `${alias} (now v${aliases[alias]})` : `${alias} (once a version is promoted)`),
            h("td", {}, h("code", { class: "url" }, url)),
          ),
        ),
        h(
          "tr",
          { dataset: { version } },
          h("td", {}, `version ${version}`),
          h("td", {}, h("code", { class: "url" }, urls.version)),
        ),
      ],
      { id: "prediction-urls" },
    ),
    h(
      "p",
      { class: "muted" },
      "POST a photo (JPEG, PNG, WebP, BMP or GIF) as the body, or as a multipart field named file. ",
      keyName
        ? `The code uses the key you signed in with, named "${keyName}", by name: put its secret in ${"VISIONDOCK_API_KEY"}.`
        : "Put an API key's secret in VISIONDOCK_API_KEY.",
    ),
    problem ? h("p", { class: "caveat", id: "key-problem" }, problem) : null,
    h("label", { class: "inline" }, "The code calls ", picker),
    snippets,
  );
}

export async function testView(host, model, number) {
  const [version, summary, me] = await Promise.all([
    host.registry(`${modelPath(model)}/versions/${number}`),
    host.registry(modelPath(model)),
    host.me().catch(() => null),
  ]);
  const versionNumber = Number(number);
  const tryArea = h("div", { id: "try" });
  if (host.tryIt) {
    await host.tryIt(tryArea, {
      model,
      version: versionNumber,
      labels: version.labels,
      task: version.task,
      aliases: summary.aliases,
      // What an "uncertain" answer means for this version, and how far to trust it.
      thresholds: version.metrics?.thresholds || {},
      thresholdNote: thresholdNote(version.metrics || {}, version.task),
    });
  } else {
    tryArea.append(
      h(
        "p",
        { class: "muted" },
        "Trying a photo needs the console (the annotation service's /app), which reaches the scoring service for the page.",
      ),
    );
  }
  return [
    ...versionHeader(host, model, number, version, "test"),
    h(
      "div",
      { class: "card-grid wide" },
      card("Try it on a photo", tryArea),
      card(
        "Use this model",
        usePanel({
          model,
          version: versionNumber,
          aliases: summary.aliases,
          task: version.task,
          me,
          publicUrl: host.config.scoring_public_url,
          promoteAlias: host.config.promote_alias,
        }),
      ),
    ),
  ];
}
