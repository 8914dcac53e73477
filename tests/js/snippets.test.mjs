// "Use this model" (visiondock/pages/snippets.js): URLs and code that name the key, never hold its secret.
import assert from "node:assert/strict";
import { test } from "node:test";
import {
  curlSnippet,
  keyProblem,
  predictionUrls,
  pythonSnippet,
  searchSkill,
  skillUrl,
} from "../../visiondock/pages/snippets.js";

test("the URLs of a model at each alias and at one version", () => {
  const urls = predictionUrls("https://score.example.com/", "shelf", {
    version: 3,
    aliases: ["production", "staging"],
  });
  assert.equal(urls.aliases.production, "https://score.example.com/v1/models/shelf/aliases/production/predict");
  assert.equal(urls.version, "https://score.example.com/v1/models/shelf/versions/3/predict");
  assert.equal(
    skillUrl(urls.version, "detection"),
    "https://score.example.com/v1/models/shelf/versions/3/skills/detect",
  );
  assert.equal(skillUrl(urls.model, "multiclass"), "https://score.example.com/v1/models/shelf/skills/classify");
});

test("curl and Python read the secret from the environment and name the key", () => {
  const url = "https://score.example.com/v1/models/flowers/aliases/production/predict";
  const curl = curlSnippet(url, "search-skill");
  assert.match(curl, /the key named "search-skill"/);
  assert.match(curl, /-H "X-API-Key: \$VISIONDOCK_API_KEY"/);
  assert.match(curl, /--data-binary @photo\.jpg/);
  const python = pythonSnippet(url, "search-skill", "multiclass");
  assert.match(python, /os\.environ\["VISIONDOCK_API_KEY"\]/);
  assert.match(python, /answer\["label"\]/);
  assert.match(pythonSnippet(url, "k", "detection"), /answer\["detections"\]/);
});

test("the Azure AI Search skill scores normalized images and names the key in its header", () => {
  const skill = searchSkill({
    url: "https://s/v1/models/shelf/aliases/production/skills/detect",
    model: "shelf",
    task: "detection",
    keyName: "indexer",
  });
  assert.equal(skill["@odata.type"], "#Microsoft.Skills.Custom.WebApiSkill");
  assert.equal(skill.context, "/document/normalized_images/*");
  assert.deepEqual(skill.inputs, [{ name: "image", source: "/document/normalized_images/*" }]);
  assert.equal(skill.httpHeaders["Ocp-Apim-Subscription-Key"], "<the secret of the key named indexer>");
  assert.deepEqual(
    skill.outputs.map((o) => o.name),
    ["objects", "labels", "count", "uncertain", "model", "version"],
  );
});

test("a key that cannot call the model is named with the command that makes one", () => {
  assert.equal(keyProblem({ name: "admin", roles: ["admin"], scopes: ["*"] }, "shelf"), null);
  assert.match(
    keyProblem({ name: "labeler", roles: ["label"], scopes: ["*"] }, "shelf"),
    /needs the predict role.*visiondock key new shelf-scorer --role predict --scope shelf/,
  );
  assert.match(
    keyProblem({ name: "flowers-only", roles: ["predict"], scopes: ["flowers"] }, "shelf"),
    /limited to flowers, not shelf/,
  );
});
