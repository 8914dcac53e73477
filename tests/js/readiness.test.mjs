// The Training page's check before a run starts (services/annotation/webapp/static/readiness.js): the
// trainer's rule, said before the run instead of seconds into it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { trainingProblem } from "../../services/annotation/webapp/static/readiness.js";

test("every tag in use needs two labeled images, a classifier two tags", () => {
  assert.match(trainingProblem({ labeled_count: 0, tag_counts: { a: 0 } }, "multiclass"), /No image is labeled/);
  assert.match(
    trainingProblem({ labeled_count: 5, tag_counts: { rose: 4, tulip: 1, daisy: 0 } }, "multiclass"),
    /at least two labeled images.*tulip has 1\./,
  );
  assert.match(trainingProblem({ labeled_count: 3, tag_counts: { rose: 3 } }, "multiclass"), /two tags.*only rose/);
  assert.equal(trainingProblem({ labeled_count: 3, tag_counts: { rose: 3 } }, "multilabel"), null);
  assert.match(trainingProblem({ labeled_count: 2, tag_counts: { can: 0 } }, "detection"), /has a box/);
  assert.equal(trainingProblem({ labeled_count: 4, tag_counts: { can: 2, box: 3, unused: 0 } }, "detection"), null);
});
