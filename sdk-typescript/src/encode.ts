/**
 * JSON encoding of the SDK's events (the hot path of decide() and report()), byte for byte the
 * shape the Python SDK writes.
 *
 * The parts that never change for a router (goal, candidates, service, versions) are encoded
 * once. Identifiers need no escaping: their character set contains no quote, backslash or
 * control character. Free-form values (context) go through JSON.stringify. Tests validate
 * every encoded event against the JSON Schema that `outroute schemas export` writes.
 */

import type { Outcome } from "./decision.js";
import type { Context } from "./validate.js";

let cachedSecond = -1;
let cachedPrefix = "";

/** Microseconds since the Unix epoch, from the monotonic clock anchored at process start. */
export function nowMicros(): number {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

/** `us` (Unix epoch microseconds) as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
export function utcTimestamp(us: number): string {
  const second = Math.floor(us / 1_000_000);
  const rest = us - second * 1_000_000;
  if (second !== cachedSecond) {
    cachedPrefix = new Date(second * 1000).toISOString().slice(0, 19);
    cachedSecond = second;
  }
  return `${cachedPrefix}.${String(rest).padStart(6, "0")}Z`;
}

function jsonNumber(value: number | null): string {
  return value === null ? "null" : String(value);
}

/** Encodes one router's DecisionEvents and OutcomeEvents to JSON strings. */
export class EventEncoder {
  private readonly goal: string;
  private readonly allCandidates: string;
  private readonly tail: string;

  constructor(goal: string, candidates: readonly string[], service: string | null, sdk: string) {
    this.goal = goal;
    this.allCandidates = EventEncoder.candidatesJson(candidates);
    const serviceJson = service === null ? "null" : `"${service}"`;
    this.tail = `,"service":${serviceJson},"sdk_version":"${sdk}"}`;
  }

  static candidatesJson(candidates: readonly string[]): string {
    return `[${candidates.map((c) => `"${c}"`).join(",")}]`;
  }

  decision(
    traceId: string,
    path: string,
    reason: string,
    policyVersion: number | null,
    context: Context | null,
    decidedUs: number,
    candidatesJson: string | null = null,
  ): string {
    const version = policyVersion === null ? "null" : String(policyVersion);
    const ctx = context ? JSON.stringify(context) : "{}";
    return (
      `{"schema_version":1,"event_id":"${traceId}.d","trace_id":"${traceId}",` +
      `"goal":"${this.goal}","path":"${path}",` +
      `"candidates":${candidatesJson ?? this.allCandidates},"reason":"${reason}",` +
      `"policy_version":${version},"context":${ctx},` +
      `"decided_at":"${utcTimestamp(decidedUs)}"${this.tail}`
    );
  }

  static outcome(traceId: string, outcome: Outcome, occurredUs: number = nowMicros()): string {
    const category = outcome.failureCategory;
    const categoryJson = category === null ? "null" : `"${category}"`;
    // Only when set: a worker older than the field would reject the event.
    const ttft = outcome.timeToFirstTokenMs;
    const firstToken = ttft === null ? "" : `"time_to_first_token_ms":${ttft},`;
    return (
      `{"schema_version":1,"event_id":"${traceId}.o","trace_id":"${traceId}",` +
      `"success":${outcome.success ? "true" : "false"},` +
      `"score":${jsonNumber(outcome.score)},` +
      `"cost_usd":${jsonNumber(outcome.costUsd)},` +
      `"latency_ms":${jsonNumber(outcome.latencyMs)},${firstToken}` +
      `"failure_category":${categoryJson},` +
      `"prompt_tokens":${jsonNumber(outcome.promptTokens)},` +
      `"completion_tokens":${jsonNumber(outcome.completionTokens)},` +
      `"source":"sdk","occurred_at":"${utcTimestamp(occurredUs)}"}`
    );
  }
}
