/**
 * Decide and report DECISIONS times (every third a failure, with context and measurements),
 * then flush. With RESTART=1 the test stops the broker after a first half has been delivered
 * (step "delivered"): the second half is made while it is down and waits in the queue (step
 * "queued"), and once the broker is back, flush() delivers it. `traces` are then the second
 * half's (a broker restarted with memory storage has lost the first). COMPRESSION=gzip
 * compresses the batches.
 */

import { Router } from "../../src/index.js";
import { check, number, result, step } from "./common.js";

const decisions = number("DECISIONS", 1000);
const restart = process.env.RESTART === "1";
const compression = process.env.COMPRESSION === "gzip" ? "gzip" : "none";
const router = Router.fromEnv({
  goal: "ts-emit",
  paths: ["alpha", "beta", "gamma"],
  service: "ts-integration",
  seed: 11,
  cache: { initWaitMs: 0 },
  emitter: { compression },
});

function emit(from: number, to: number): string[] {
  const traces: string[] = [];
  for (let i = from; i < to; i++) {
    const d = router.decide({ context: { i, tenant: i % 2 === 0 ? "even" : "odd" } });
    traces.push(d.traceId);
    d.report(i % 3 !== 0, { latencyMs: i % 500, costUsd: 0.0001 * (i % 7), failureCategory: i % 3 === 0 ? "timeout" : null });
  }
  return traces;
}

let traces: string[];
let queuedPending = 0;
if (restart) {
  const half = Math.floor(decisions / 2);
  emit(0, half);
  check((await router.flush(60_000)) === 0, "the first half delivered");
  await step("delivered", { delivered: router.stats().delivered });
  traces = emit(half, decisions);
  queuedPending = router.stats().pending;
  await step("queued", { pending: queuedPending });
} else {
  traces = emit(0, decisions);
}
const pending = await router.flush(60_000);
const stats = router.stats();
check(stats.emitted === 2 * decisions, `emitted ${stats.emitted}`);
check(pending === 0, `${pending} events still pending after flush`);
check(stats.delivered === stats.emitted && stats.dropped === 0 && stats.failed === 0, JSON.stringify(stats));
await router.close(5000);
result({ stats, traces, queuedPending });
