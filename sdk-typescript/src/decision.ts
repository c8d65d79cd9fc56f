/** The Decision handle returned by `Router.decide()`, and validation of what is reported. */

import { ArgumentError } from "./errors.js";
import type { Reason } from "./sampling.js";
import { checkKeys, show } from "./validate.js";

export const FAILURE_CATEGORIES = [
  "timeout",
  "rate_limited",
  "connection_error",
  "provider_error",
  "auth_error",
  "invalid_request",
  "invalid_output",
  "content_filter",
  "tool_error",
  "user_rejected",
  "cancelled",
  "other",
] as const;
export type FailureCategory = (typeof FAILURE_CATEGORIES)[number];

/** What a report may say besides success; fields left out are filled from measured turns. */
export interface ReportFields {
  /** Graded quality in [0, 1]; when given it is the reward instead of success. */
  score?: number | null;
  costUsd?: number | null;
  latencyMs?: number | null;
  failureCategory?: FailureCategory | null;
  promptTokens?: number | null;
  completionTokens?: number | null;
}

const REPORT_KEYS = [
  "score",
  "costUsd",
  "latencyMs",
  "failureCategory",
  "promptTokens",
  "completionTokens",
] as const;

/** A validated report, ready to be emitted. */
export interface Outcome {
  readonly success: boolean;
  readonly score: number | null;
  readonly costUsd: number | null;
  readonly latencyMs: number | null;
  readonly failureCategory: FailureCategory | null;
  readonly promptTokens: number | null;
  readonly completionTokens: number | null;
  readonly timeToFirstTokenMs: number | null;
}

/** What one call of a path measured (a model turn, one run() attempt). */
export interface Turn {
  readonly latencyMs: number;
  readonly costUsd?: number | null;
  readonly promptTokens?: number | null;
  readonly completionTokens?: number | null;
  readonly timeToFirstTokenMs?: number | null;
}

/** Where a Decision sends its report (the router's ledger of reports). */
export interface Reporter {
  emit(decision: Decision, outcome: Outcome, by: string): boolean;
  recordTurn(decision: Decision, turn: Turn): void;
}

function num(name: string, value: unknown, upper?: number): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number") throw new ArgumentError(`${name} must be a number, got ${show(value)}`);
  if (!Number.isFinite(value)) throw new ArgumentError(`${name} must be finite, got ${value}`);
  if (value < 0 || (upper !== undefined && value > upper)) {
    const rule = upper !== undefined ? `in [0, ${upper}]` : ">= 0";
    throw new ArgumentError(`${name} must be ${rule}, got ${value}`);
  }
  return value;
}

function count(name: string, value: unknown): number | null {
  if (value === undefined || value === null) return null;
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new ArgumentError(`${name} must be a non-negative integer, got ${show(value)}`);
  }
  return value;
}

/** Check a report's fields; ArgumentError names the first bad field and its rule. */
export function validateOutcome(
  success: unknown,
  fields: ReportFields = {},
  timeToFirstTokenMs: number | null = null,
): Outcome {
  if (typeof success !== "boolean") {
    throw new ArgumentError(`success must be a boolean, got ${show(success)}`);
  }
  if (typeof fields !== "object" || fields === null) {
    throw new ArgumentError(`report fields must be an object, got ${show(fields)}`);
  }
  checkKeys("report()", fields, REPORT_KEYS);
  const category = fields.failureCategory ?? null;
  if (category !== null && !(FAILURE_CATEGORIES as readonly string[]).includes(category)) {
    throw new ArgumentError(
      `failureCategory must be one of ${FAILURE_CATEGORIES.join(", ")}; got ${show(category)}`,
    );
  }
  return {
    success,
    score: num("score", fields.score, 1.0),
    costUsd: num("costUsd", fields.costUsd),
    latencyMs: num("latencyMs", fields.latencyMs),
    failureCategory: category,
    promptTokens: count("promptTokens", fields.promptTokens),
    completionTokens: count("completionTokens", fields.completionTokens),
    timeToFirstTokenMs: num("timeToFirstTokenMs", timeToFirstTokenMs),
  };
}

/**
 * Which path was chosen for one request, and why. Report how it went with `report()`, from
 * any async context. Only the first report of a decision is emitted.
 *
 * A decision made by `completion()` or `run()` also carries what its calls measured (latency,
 * tokens, cost, summed over the turns of a conversation); a report that leaves those fields
 * out gets them from there.
 */
export class Decision {
  /** @internal */ readonly reporter: Reporter;
  /** @internal */ reportedByValue: string | null = null;
  /** @internal */ readonly turnList: Turn[] = [];
  readonly traceId: string;
  readonly path: string;
  readonly reason: Reason;
  readonly policyVersion: number | null;
  readonly candidates: readonly string[];
  readonly madeBy: string;
  /** Microseconds since the Unix epoch. */
  readonly decidedAtUs: number;

  constructor(
    reporter: Reporter,
    traceId: string,
    path: string,
    reason: Reason,
    policyVersion: number | null,
    decidedAtUs: number,
    candidates: readonly string[],
    madeBy = "decide()",
  ) {
    this.reporter = reporter;
    this.traceId = traceId;
    this.path = path;
    this.reason = reason;
    this.policyVersion = policyVersion;
    this.decidedAtUs = decidedAtUs;
    this.candidates = candidates;
    this.madeBy = madeBy;
  }

  get decidedAt(): Date {
    return new Date(Math.floor(this.decidedAtUs / 1000));
  }

  get reported(): boolean {
    return this.reportedByValue !== null;
  }

  /** Who emitted this decision's outcome: "report()", "completion()", ...; null while open. */
  get reportedBy(): string | null {
    return this.reportedByValue;
  }

  /** How many calls of the path this decision served (turns of a conversation). */
  get turns(): number {
    return this.turnList.length;
  }

  /**
   * Emit the outcome of this decision. Returns false, and emits nothing, if it had already
   * been reported (`reportedBy` says by whom). Throws ArgumentError naming the field for
   * invalid values; nothing is emitted then.
   */
  report(success: boolean, fields: ReportFields = {}): boolean {
    return this.reporter.emit(this, validateOutcome(success, fields), "report()");
  }

  toString(): string {
    return `Decision(path=${this.path}, reason=${this.reason}, traceId=${this.traceId})`;
  }
}

function total(values: (number | null | undefined)[]): number | null {
  const present = values.filter((v): v is number => v !== null && v !== undefined);
  return present.length > 0 ? present.reduce((a, b) => a + b, 0) : null;
}

/** `outcome` with the fields it leaves out filled from the decision's turns. */
export function withTurns(outcome: Outcome, turns: readonly Turn[]): Outcome {
  if (turns.length === 0) return outcome;
  const firstToken = turns.find((t) => t.timeToFirstTokenMs != null)?.timeToFirstTokenMs ?? null;
  return {
    ...outcome,
    costUsd: outcome.costUsd ?? total(turns.map((t) => t.costUsd)),
    latencyMs: outcome.latencyMs ?? total(turns.map((t) => t.latencyMs)),
    promptTokens: outcome.promptTokens ?? total(turns.map((t) => t.promptTokens)),
    completionTokens: outcome.completionTokens ?? total(turns.map((t) => t.completionTokens)),
    timeToFirstTokenMs: outcome.timeToFirstTokenMs ?? firstToken,
  };
}
