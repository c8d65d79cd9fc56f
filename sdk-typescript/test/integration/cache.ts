/**
 * The policy feed against a real Redis that the test stops and starts again: a message on
 * `<prefix>:policy-changes` naming the goals of a write delivers an update (the poll interval
 * is a minute, so only the subscription can) to both routers of the goal, which share the
 * process's feed; Redis away keeps the last snapshot and marks it stale while decide() goes
 * on; Redis back is read again.
 */

import { createClient } from "redis";

import { Router, silentLogger } from "../../src/index.js";
import { InMemorySink } from "../../src/testing.js";
import { check, result, step, waitUntil } from "./common.js";

const url = process.env.OUTROUTE_REDIS_URL!;
const prefix = process.env.OUTROUTE_REDIS_KEY_PREFIX!;
const goal = "ts-cache";

function snapshot(version: number, good: string): string {
  const paths: Record<string, object> = {};
  for (const name of ["a", "b"]) {
    const strong = name === good;
    paths[name] = {
      alpha: strong ? 95 : 5, beta: strong ? 5 : 95, n: 100, recent_n: 0, recent_successes: 0,
      baseline_rate: null, mean_cost_usd: null, mean_latency_ms: null,
      last_outcome_at: new Date().toISOString(), status: "healthy",
    };
  }
  return JSON.stringify({ goal, version, generated_at: new Date().toISOString(), paths });
}

const sink = new InMemorySink();
const options = {
  goal, paths: ["a", "b"], eventSink: sink, explorationRate: 0, logger: silentLogger, seed: 5,
  cache: { pollIntervalMs: 60_000, maxStalenessMs: 1000, initWaitMs: 5000 },
};
const router = Router.fromEnv(options);
const twin = Router.fromEnv({ ...options, seed: 6 }); // the same goal, the same feed
const writer = createClient({ url });
writer.on("error", () => undefined);
await writer.connect();
await writer.set(`${prefix}:policy:${goal}`, snapshot(1, "a"));

await router.start();
await twin.start();
check(router.stats().policyVersion === 1, `version after start: ${router.stats().policyVersion}`);
check(router.decide().path === "a", "the snapshot's strong path is chosen");

// An update arrives by pub/sub, within the poll interval of a minute (once the feed's
// subscription is there: a message published before it would be nobody's). A worker names
// every goal of a write in one message.
const channel = `${prefix}:policy-changes`;
await waitUntil(async () => {
  const reply = (await writer.sendCommand(["PUBSUB", "NUMSUB", channel])) as unknown[];
  return Number(reply[1]) >= 1;
}, 20, "the feed's subscription");
const reply = (await writer.sendCommand(["PUBSUB", "NUMSUB", channel])) as unknown[];
check(Number(reply[1]) === 1, `one subscriber for the process's routers, got ${String(reply[1])}`);
await writer.set(`${prefix}:policy:${goal}`, snapshot(2, "b"));
await writer.publish(channel, `another-goal\n${goal}`);
await waitUntil(() => router.stats().policyVersion === 2 && twin.stats().policyVersion === 2, 20, "the published update");
check(router.decide().path === "b", "the updated snapshot's strong path is chosen");
await twin.close(1000);
writer.destroy();

await step("subscribed");  // the test stops Redis now
let decided = 0;
await waitUntil(() => {
  for (let i = 0; i < 10; i++) {
    const d = router.decide();
    check(d.path === "b" && d.policyVersion === 2 && d.reason === "exploit", `decision while Redis is away: ${d}`);
    decided += 1;
  }
  return router.stats().policyStale;
}, 30, "the policy to be marked stale");
const away = router.stats();
check(away.policyErrors >= 1, "errors counted while Redis is away");

await step("stale", { decided });  // the test starts Redis again, empty
const back = createClient({ url });
back.on("error", () => undefined);
await back.connect();
await back.set(`${prefix}:policy:${goal}`, snapshot(3, "a"));
await back.publish(channel, goal);
await waitUntil(() => router.stats().policyVersion === 3 && !router.stats().policyStale, 30, "Redis back");
check(router.decide().path === "a", "the new snapshot is followed");

// An operator pins the goal: the overrides key is read with the snapshot (one MGET).
const at = new Date().toISOString();
await back.set(`${prefix}:overrides:${goal}`, JSON.stringify({ goal, version: 1, disabled: {}, pinned: { path: "b", by: "oncall", at, until: null, reason: "test" } }));
await back.publish(channel, goal);
await waitUntil(() => router.getPolicy().overridesVersion === 1, 30, "the pin");
const pinned = router.decide();
check(pinned.path === "b" && pinned.reason === "override", `a pinned decision: ${pinned}`);
back.destroy();
await router.close(1000);
result({ decidedWhileAway: decided, away, back: router.stats() });
