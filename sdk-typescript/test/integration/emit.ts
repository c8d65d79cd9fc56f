/**
 * Decide and report DECISIONS times (every third a failure, with context and measurements),
 * then flush. With WAIT_FOR_BROKER=1 the broker is down when the events are made: the script
 * says so (step "queued") and, once told the broker is back, flushes what waited.
 */

import { Router } from "../../src/index.js";
import { check, number, result, step } from "./common.js";

const decisions = number("DECISIONS", 1000);
const router = Router.fromEnv({ goal: "ts-emit", paths: ["alpha", "beta", "gamma"], service: "ts-integration", seed: 11, cache: { initWaitMs: 0 } });
const traces: string[] = [];
for (let i = 0; i < decisions; i++) {
  const d = router.decide({ context: { i, tenant: i % 2 === 0 ? "even" : "odd" } });
  traces.push(d.traceId);
  d.report(i % 3 !== 0, { latencyMs: i % 500, costUsd: 0.0001 * (i % 7), failureCategory: i % 3 === 0 ? "timeout" : null });
}
const queued = router.stats();
check(queued.emitted === 2 * decisions, `emitted ${queued.emitted}`);
if (process.env.WAIT_FOR_BROKER === "1") {
  // Some may have gone out before the broker was stopped; the rest wait in the queue.
  await step("queued", { pending: queued.pending });
}
const pending = await router.flush(60_000);
const stats = router.stats();
check(pending === 0, `${pending} events still pending after flush`);
check(stats.delivered === stats.emitted && stats.dropped === 0 && stats.failed === 0, JSON.stringify(stats));
await router.close(5000);
result({ stats, traces, queuedPending: queued.pending });
