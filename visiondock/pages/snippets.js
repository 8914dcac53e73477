// "Use this model": the scoring service's URLs for a model (at an alias, at a version) and code that calls
// them, ready to copy: curl, Python (httpx) and an Azure AI Search custom skill definition. The code names the
// caller's key by its NAME and reads its secret from the environment: the page never has a secret to show.
// No DOM: Node's test runner checks them (tests/js/snippets.test.mjs).

export const KEY_VARIABLE = "VISIONDOCK_API_KEY";

const trimmed = (url) => String(url || "").replace(/\/+$/, "");

// Where to send a photo: the model at each alias (the version under the alias changes with each promotion)
// and at one version (it answers only while the scoring service serves that version).
// {aliases: {production: url, ...}, version: url, model: url (whatever the service serves it at first)}
export function predictionUrls(scoringUrl, model, { version, aliases = [] } = {}) {
  const base = `${trimmed(scoringUrl)}/v1/models/${model}`;
  return {
    model: `${base}/predict`,
    aliases: Object.fromEntries(aliases.map((alias) => [alias, `${base}/aliases/${alias}/predict`])),
    version: version ? `${base}/versions/${version}/predict` : null,
  };
}

// The skill route beside a prediction URL: classify, or detect for a detector.
export function skillUrl(predictUrl, task) {
  return predictUrl.replace(/\/predict$/, `/skills/${task === "detection" ? "detect" : "classify"}`);
}

const keyComment = (keyName) => (keyName ? `the secret of the key named "${keyName}"` : "an API key's secret");

export function curlSnippet(url, keyName) {
  return [
    `# ${KEY_VARIABLE} holds ${keyComment(keyName)}: never put it in code.`,
    `curl -X POST "${url}" \\`,
    `  -H "X-API-Key: $${KEY_VARIABLE}" \\`,
    '  -H "Content-Type: image/jpeg" \\',
    "  --data-binary @photo.jpg",
  ].join("\n");
}

export function pythonSnippet(url, keyName, task) {
  const reading =
    task === "detection"
      ? ['for found in answer["detections"]:', '    print(found["label"], round(found["score"], 3), found["box"])']
      : ['print(answer["label"], answer["probability"], "uncertain" if answer["uncertain"] else "")'];
  return [
    "import os",
    "",
    "import httpx",
    "",
    `# ${KEY_VARIABLE} holds ${keyComment(keyName)}: never put it in code.`,
    `api_key = os.environ["${KEY_VARIABLE}"]`,
    "",
    'with open("photo.jpg", "rb") as photo:',
    "    response = httpx.post(",
    `        "${url}",`,
    '        headers={"X-API-Key": api_key},',
    '        files={"file": ("photo.jpg", photo, "image/jpeg")},',
    "        timeout=30.0,",
    "    )",
    "response.raise_for_status()",
    "answer = response.json()",
    ...reading,
  ].join("\n");
}

const SKILL_OUTPUTS = {
  classify: ["label", "probability", "predictions", "uncertain", "model", "version"],
  detect: ["objects", "labels", "count", "uncertain", "model", "version"],
};

// An Azure AI Search custom Web API skill (a skillset's `skills` entry) scoring each normalized image of a
// document with the model at `url` (a skill URL). Azure AI Search presents the key in its own header; the
// definition names the key, and its secret is put in when the skillset is created.
export function searchSkill({ url, model, task, keyName }) {
  const kind = task === "detection" ? "detect" : "classify";
  return {
    "@odata.type": "#Microsoft.Skills.Custom.WebApiSkill",
    name: `visiondock-${model}`,
    description: `${kind === "detect" ? "Objects found" : "Labels given"} by the VisionDock model ${model}`,
    context: "/document/normalized_images/*",
    uri: url,
    httpMethod: "POST",
    httpHeaders: {
      "Ocp-Apim-Subscription-Key": keyName ? `<the secret of the key named ${keyName}>` : "<an API key's secret>",
    },
    timeout: "PT60S",
    batchSize: 8,
    degreeOfParallelism: 2,
    inputs: [{ name: "image", source: "/document/normalized_images/*" }],
    outputs: SKILL_OUTPUTS[kind].map((name) => ({ name, targetName: `${model}_${name}` })),
  };
}

export const skillSnippet = (options) => JSON.stringify(searchSkill(options), null, 2);

// Why the key the page was opened with cannot call the scoring service for `model` (null when it can), and
// the command that makes one that can.
export function keyProblem(me, model) {
  if (!me) return null;
  const roles = me.roles || [];
  const scopes = me.scopes || [];
  const command = `visiondock key new ${model}-scorer --role predict --scope ${model}`;
  if (!roles.includes("predict") && !roles.includes("admin")) {
    return `The key named "${me.name}" (${roles.join(", ")}) cannot call the scoring service: it needs the predict role. Make a key for the caller: ${command}`;
  }
  if (!scopes.includes("*") && !scopes.includes(model)) {
    return `The key named "${me.name}" is limited to ${scopes.join(", ")}, not ${model}. Make a key for the caller: ${command}`;
  }
  return null;
}
