/**
 * Cross-language: this SDK emits, the Python worker joins and publishes snapshots, and this
 * SDK's next decisions follow them. Two paths succeed 90% of the time; after WARMUP decisions
 * "fading" drops to 10%. Decisions go on (each reported at once) until fading's share of the
 * last WINDOW decisions is below MAX_SHARE, or LIMIT seconds pass (a failure). LOCAL_OUTCOMES=0
 * leaves the router's own outcomes out, so that only the workers' snapshots can move traffic.
 */

import { Router } from "../../src/index.js";
import { check, number, result, waitUntil } from "./common.js";

const warmup = number("WARMUP", 400);
const window = number("WINDOW", 300);
const maxShare = number("MAX_SHARE", 0.15);
const limit = number("LIMIT", 120);
const localOutcomes = number("LOCAL_OUTCOMES", 1) !== 0;
const router = Router.fromEnv({
  goal: "ts-e2e",
  paths: ["steady", "fading"],
  seed: 17,
  localOutcomes,
  cache: { pollIntervalMs: 200 },
});
await router.start(10_000);

let random = 12345;
function uniform(): number {
  random = (Math.imul(random, 1103515245) + 12345) >>> 0;
  return random / 4294967296;
}

const recent: string[] = [];
const reasons: Record<string, number> = {};
let fadingDuringWarmup = 0;
let decisions = 0;
const versions = new Set<number>();
const started = Date.now();
let share = 1;
await waitUntil(async () => {
  for (let i = 0; i < 20; i++) {
    const d = router.decide();
    decisions += 1;
    reasons[d.reason] = (reasons[d.reason] ?? 0) + 1;
    if (d.policyVersion !== null) versions.add(d.policyVersion);
    const degraded = d.path === "fading" && decisions > warmup;
    if (decisions <= warmup && d.path === "fading") fadingDuringWarmup += 1;
    d.report(uniform() < (degraded ? 0.1 : 0.9), { latencyMs: 100 });
    if (decisions > warmup) {
      recent.push(d.path);
      if (recent.length > window) recent.shift();
    }
  }
  await new Promise((r) => setTimeout(r, 5)); // about 2,000 decisions a second at most
  share = recent.filter((p) => p === "fading").length / Math.max(1, recent.length);
  return recent.length === window && share < maxShare && decisions > warmup + 2 * window;
}, limit, "traffic to leave the degraded path");
check(await router.flush(30_000) === 0, "every event delivered");
const stats = router.stats();
check(stats.dropped === 0 && stats.failed === 0, JSON.stringify(stats));
await router.close(5000);
result({
  decisions,
  seconds: (Date.now() - started) / 1000,
  fadingShareDuringWarmup: fadingDuringWarmup / warmup,
  fadingShareAtEnd: share,
  reasons,
  policyVersions: versions.size,
  policy: router.getPolicy(),
  stats,
});
