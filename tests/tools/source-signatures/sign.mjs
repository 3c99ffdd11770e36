// Signs the plan's github and stripe vectors with the vendors' own npm packages.
// Usage: node sign.mjs <repo root> <plan.json>  →  JSON {index: {header: value}} on stdout.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { sign } from "@octokit/webhooks-methods";
import Stripe from "stripe";

const [root, planPath] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(planPath, "utf8"));
// No request is ever made: the client is only the way to reach stripe.webhooks.
const stripe = new Stripe("sk_test_unused");
const signed = {};
for (const [index, vector] of plan.vectors.entries()) {
  const body = readFileSync(join(root, vector.fixture), "utf8");
  if (vector.scheme === "github") {
    signed[index] = { "X-Hub-Signature-256": await sign(vector.secret, body) };
  } else if (vector.scheme === "stripe") {
    const header = stripe.webhooks.generateTestHeaderString({
      payload: body,
      secret: vector.secret,
      timestamp: vector.timestamp,
    });
    signed[index] = { "Stripe-Signature": header };
  }
}
process.stdout.write(JSON.stringify(signed));
