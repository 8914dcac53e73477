// Whether a project's labels can train a model, checked before a run starts (the trainer's own rule,
// services/trainer/data.py, would fail it seconds later): every tag in use needs two labeled images, one
// to train on and one to test; a classifier needs two tags. No DOM: Node's test runner checks it.

// stats: GET /v1/projects/{id}/stats; type: multiclass, multilabel or detection. A sentence saying what
// to label first, or null when training may start.
export function trainingProblem(stats, type) {
  if (!stats.labeled_count) return "No image is labeled yet: label some images before training.";
  const used = Object.entries(stats.tag_counts || {}).filter(([, count]) => count > 0);
  if (!used.length) {
    return type === "detection"
      ? "No labeled image has a box yet: draw boxes on some images before training."
      : "No labeled image carries a tag yet: tag some images before training.";
  }
  const few = used.filter(([, count]) => count < 2);
  if (few.length) {
    const listed = few.map(([tag, count]) => `${tag} has ${count}`).join(", ");
    return `Every tag needs at least two labeled images (one to train on, one to test); ${listed}. Label another image with it, or take the tag off.`;
  }
  if (type === "multiclass" && used.length < 2) {
    return `A classifier needs at least two tags with labeled images; only ${used[0][0]} has any.`;
  }
  return null;
}
