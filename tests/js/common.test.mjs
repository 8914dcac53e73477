// The page code both pages share (visiondock/pages/common.js), its parts that need no page.
import assert from "node:assert/strict";
import { test } from "node:test";
import { ApiError, percent, withParams } from "../../visiondock/pages/common.js";

test("percent: one decimal and a space, a dash for what is not a number", () => {
  assert.equal(percent(0.875), "87.5 %");
  assert.equal(percent(1), "100.0 %");
  assert.equal(percent(0.12345, 2), "12.35 %");
  for (const nothing of [undefined, null, "0.5", Number.NaN]) assert.equal(percent(nothing), "–");
});

test("withParams: repeated names for arrays, nothing for null and undefined", () => {
  assert.equal(withParams("/v1/runs", { model: "shelf", limit: 10 }), "/v1/runs?model=shelf&limit=10");
  assert.equal(withParams("/v1/x", { tag: ["a", "b"], continuation: undefined, skip: null }), "/v1/x?tag=a&tag=b");
  assert.equal(withParams("/v1/x?limit=5", { a: 1 }), "/v1/x?limit=5&a=1");
  assert.equal(withParams("/v1/x", {}), "/v1/x");
});

test("ApiError carries the status and the service's code", () => {
  const error = new ApiError(409, "the suggestion has no box", "empty_suggestion");
  assert.equal(error.message, "the suggestion has no box");
  assert.deepEqual([error.status, error.code, error instanceof Error], [409, "empty_suggestion", true]);
});
